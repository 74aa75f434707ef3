"""Series read from Redis at scrape time: every live worker's heartbeat (its engine status and
the counters it records, docplatform/metrics/recorder.py) and the depth of every queue.

A worker's series carry `worker="<celery node name>"`; they vanish with its heartbeat, and its
counters restart from zero when the process does (Prometheus' rate() handles such resets).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from vision.heartbeat import WORKER_QUEUES, heartbeats_read, redis_client, worker_queue_name

logger = logging.getLogger(__name__)

ENGINE_STATES = ("starting", "loading", "ready", "error", "off", "stopped")
_HISTOGRAMS = {
    "time_to_first_token_seconds": "Time from the engine taking a request to its first token.",
    "inter_token_latency_seconds": "Time between two generated tokens of one request.",
    "e2e_request_latency_seconds": "Time from the engine taking a request to its end.",
}
_COUNTERS = {
    "prompt_tokens": "Prompt tokens processed (image tokens included).",
    "generation_tokens": "Tokens generated.",
    "prefix_cache_queries": "Prompt tokens looked up in the prefix KV cache.",
    "prefix_cache_hits": "Prompt tokens whose KV came from the prefix cache.",
}


def _histogram(name: str, doc: str) -> HistogramMetricFamily:
    return HistogramMetricFamily(f"vllm:{name}", doc, labels=["worker", "model_name"])


class WorkerCollector(Collector):
    """One scrape = one SCAN + MGET of the heartbeats and one LLEN per queue."""

    def collect(self) -> Iterator[Metric]:
        client = redis_client(settings.REDIS_URL, timeout=1.0)
        try:
            beats = heartbeats_read(client)
            queues = [*WORKER_QUEUES] + [worker_queue_name(b["hostname"]) for b in beats]
            pipe = client.pipeline()
            for queue in queues:
                pipe.llen(queue)
            depths = pipe.execute()
        except redis.RedisError as exc:
            logger.warning("metrics: Redis unreachable: %s", exc)
            up = GaugeMetricFamily("docplatform_redis_up", "Whether this scrape could read Redis.")
            up.add_metric([], 0)
            yield up
            return
        finally:
            client.close()

        up = GaugeMetricFamily("docplatform_redis_up", "Whether this scrape could read Redis.")
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "docplatform_queue_depth", "Messages waiting in a Celery queue (Redis LLEN).", labels=["queue"]
        )
        for queue, length in zip(queues, depths, strict=True):
            depth.add_metric([queue], length)
        yield depth
        yield from self._workers(beats)

    def _workers(self, beats: list) -> Iterator[Metric]:
        served = settings.VISION_SERVED_MODEL_NAME
        running = GaugeMetricFamily(
            "vllm:num_requests_running",
            "Requests in the engine's running batch.",
            labels=["worker", "model_name"],
        )
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting", "Requests waiting for the engine.", labels=["worker", "model_name"]
        )
        kv_usage = GaugeMetricFamily(
            "vllm:kv_cache_usage_perc",
            "Prefix KV cache memory in use, as a fraction of VISION_KV_CACHE_MB.",
            labels=["worker", "model_name"],
        )
        kv_bytes = GaugeMetricFamily(
            "docplatform_kv_cache_bytes", "Prefix KV cache memory in use.", labels=["worker"]
        )
        mm_queries = CounterMetricFamily(
            "vllm:mm_cache_queries",
            "Images looked up in the vision-feature cache.",
            labels=["worker", "model_name"],
        )
        mm_hits = CounterMetricFamily(
            "vllm:mm_cache_hits",
            "Images whose features came from the cache.",
            labels=["worker", "model_name"],
        )
        state = GaugeMetricFamily(
            "docplatform_engine_state", "1 for the engine's current state.", labels=["worker", "state"]
        )
        counters = {
            key: CounterMetricFamily(f"vllm:{key}", doc, labels=["worker", "model_name"])
            for key, doc in _COUNTERS.items()
        }
        success = CounterMetricFamily(
            "vllm:request_success",
            "Finished requests per finish reason.",
            labels=["worker", "model_name", "finished_reason"],
        )
        histograms = {key: _histogram(key, doc) for key, doc in _HISTOGRAMS.items()}

        for beat in beats:
            worker = beat["hostname"]
            engine = beat.get("engine") or {}
            labels = [worker, served]
            current = engine.get("state", "unknown")
            for name in ENGINE_STATES if current in ENGINE_STATES else (*ENGINE_STATES, current):
                state.add_metric([worker, name], 1 if name == current else 0)
            running.add_metric(labels, engine.get("running", 0))
            waiting.add_metric(labels, engine.get("waiting", 0))
            prefix = engine.get("prefix_cache") or {}
            if prefix.get("max_mb"):
                kv_usage.add_metric(labels, prefix.get("mb", 0) / prefix["max_mb"])
                kv_bytes.add_metric([worker], prefix.get("mb", 0) * 2**20)
            vision_cache = engine.get("vision_cache") or {}
            if vision_cache:
                mm_queries.add_metric(labels, vision_cache.get("hits", 0) + vision_cache.get("misses", 0))
                mm_hits.add_metric(labels, vision_cache.get("hits", 0))
            recorded = beat.get("metrics") or {}
            for key, family in counters.items():
                family.add_metric(labels, (recorded.get("counters") or {}).get(key, 0))
            for reason, count in sorted((recorded.get("finished") or {}).items()):
                success.add_metric([*labels, reason], count)
            for key, family in histograms.items():
                snapshot = (recorded.get("histograms") or {}).get(key)
                if snapshot:
                    family.add_metric(labels, _cumulative(snapshot), sum_value=snapshot["sum"])

        yield from (running, waiting, kv_usage, kv_bytes, mm_queries, mm_hits, state, success)
        yield from counters.values()
        yield from histograms.values()


def _cumulative(snapshot: dict) -> list[tuple[str, float]]:
    total, buckets = 0, []
    for bound, count in zip([*snapshot["buckets"], float("inf")], snapshot["counts"], strict=True):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
    return buckets
