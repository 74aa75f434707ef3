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


def test_paired_decode_keeps_steps_below_a_tenth_of_a_millisecond(monkeypatch) -> None:
    # A tiny checkpoint decodes a token in ~20 us. Rounded to 4 digits before the medians, such a
    # step was 0.0 and the run ended in a ZeroDivisionError (seen in CI's seed-table smoke test).
    import bench.machine as machine
    from bench import runs

    bandwidths = iter([30.0, 31.0, 32.0, 33.0, 34.0, 35.0] * 3)
    monkeypatch.setattr(machine, "measure_memory_bandwidth", lambda reps=1: next(bandwidths))
    steps = iter([20e-6, 30e-6, 40e-6])

    def fake_stream(engine, request):
        step = next(steps)
        return StreamTrace(
            t0=0.0, delta_times=[1.0, 1.0 + step, 1.0 + 2 * step], delta_tokens=[1, 1, 1], output=None
        )

    monkeypatch.setattr(runs, "stream", fake_stream)
    monkeypatch.setattr(runs, "image_request", lambda image, prompt, tokens: prompt)
    result = runs.paired_decode(None, "p", 3, 3, lambda gbs: 1e-3 / gbs)
    assert result["s_per_token"] == 30e-6
    assert [r["s_per_token"] for r in result["rounds"]] == [20e-6, 30e-6, 40e-6]
    # Each round's floor: 1e-3 / 32.5 GB/s (the median of 30..35) against its own step.
    assert [r["floor_fraction"] for r in result["rounds"]] == [
        round(1e-3 / 32.5 / s, 3) for s in (20e-6, 30e-6, 40e-6)
    ]
    assert result["floor_fraction"] == round(1e-3 / 32.5 / 30e-6, 3)
    assert result["floor_fraction_vs_best_bandwidth"] == round(1e-3 / 35.0 / 30e-6, 3)
