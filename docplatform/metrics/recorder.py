"""A worker's own metric state: counters and histograms kept in plain Python, published as JSON in
its heartbeat (vision/worker.py) and turned into Prometheus series by the web process
(docplatform/metrics/collectors.py). Workers are separate processes and hosts; Redis, which they
already write every few seconds, is how their numbers reach the one endpoint Prometheus scrapes.

No prometheus_client and no Django here: the engine adapter records into it from its threads.
Names and buckets follow vLLM's (vllm/v1/metrics/loggers.py) so vLLM dashboards work.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

# vLLM's buckets; a CPU token takes 0.1-0.5 s and a first token 1-60 s, which they cover.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5)
TTFT_BUCKETS += (10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
ITL_BUCKETS += (20.0, 40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
E2E_BUCKETS += (120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; last one is +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += times
        self.total += value * times

    def snapshot(self) -> dict:
        return {"buckets": list(self.buckets), "counts": list(self.counts), "sum": self.total}


class WorkerMetrics:
    """Thread-safe counters and histograms of one worker process. `snapshot()` is JSON."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, float] = {
            "prompt_tokens": 0,
            "generation_tokens": 0,
            "prefix_cache_queries": 0,  # prompt tokens looked up in the prefix cache (vLLM: tokens)
            "prefix_cache_hits": 0,  # of those, served from it (usage.cached_tokens)
        }
        self._finished: dict[str, int] = {}  # finish reason -> requests
        self._histograms = {
            "time_to_first_token_seconds": _Histogram(TTFT_BUCKETS),
            "inter_token_latency_seconds": _Histogram(ITL_BUCKETS),
            "e2e_request_latency_seconds": _Histogram(E2E_BUCKETS),
        }

    def token_gap(self, seconds: float, tokens: int) -> None:
        """`tokens` arrived together `seconds` after the previous ones: that many gaps."""
        if tokens > 0:
            with self._lock:
                self._histograms["inter_token_latency_seconds"].observe(seconds / tokens, tokens)

    def request_finished(
        self,
        *,
        finish_reason: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        first_token_s: float | None,
        total_s: float,
    ) -> None:
        with self._lock:
            self._counters["prompt_tokens"] += prompt_tokens
            self._counters["generation_tokens"] += completion_tokens
            self._counters["prefix_cache_queries"] += prompt_tokens
            self._counters["prefix_cache_hits"] += cached_tokens
            self._finished[finish_reason] = self._finished.get(finish_reason, 0) + 1
            if first_token_s is not None and completion_tokens > 0:
                self._histograms["time_to_first_token_seconds"].observe(first_token_s)
            self._histograms["e2e_request_latency_seconds"].observe(total_s)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "counters": dict(self._counters),
                "finished": dict(self._finished),
                "histograms": {name: h.snapshot() for name, h in self._histograms.items()},
            }


# The process's one recorder (a worker holds one engine; the web process never records here).
WORKER_METRICS = WorkerMetrics()
