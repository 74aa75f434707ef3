"""The benchmarks' per-token step times: a delta that carries several tokens spans several steps."""

from __future__ import annotations

import statistics

from bench.runs import StreamTrace


def test_token_gaps_pair_each_gap_with_the_tokens_it_carries() -> None:
    # One engine step per second. The deltas at 2 s and 4 s carry two tokens each: the first of
    # each pair ended inside a UTF-8 character, so its text (and its token) waited a step.
    trace = StreamTrace(t0=0.0, delta_times=[0.0, 2.0, 4.0, 5.0], delta_tokens=[1, 2, 2, 1], output=None)
    assert trace.gaps() == [2.0, 2.0, 1.0]
    assert statistics.median(trace.gaps()) == 2.0  # raw gaps: twice the real step
    assert trace.token_gaps() == [(2.0, 2), (2.0, 2), (1.0, 1)]
    assert trace.token_gaps(after=3.0) == [(2.0, 2), (1.0, 1)]
    per_token = [g / n for g, n in trace.token_gaps() for _ in range(n)]
    assert per_token == [1.0] * 5
