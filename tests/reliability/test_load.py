"""Bounded load on loopback: 32 concurrent clients mixing /v1/chat/completions (streaming and
not), uploads as jobs and job polling against a real uvicorn + worker (tiny checkpoint) on a
private Redis. No 5xx other than the documented 429/503, every accepted job finishes, and
p50/p95/p99 latencies per kind are printed and written to
`$DATA_DIR/test-run/reliability/load-results.json`.

CI: about a minute (LOAD_OPS_PER_CLIENT requests per client, LOAD_MAX_SECONDS at most). A longer
soak: RELIABILITY_SOAK_SECONDS=600 scripts/test.sh tests/reliability/test_load.py runs until that
many seconds passed (each client keeps going; still bounded by the time).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
import pytest

from tests.reliability.conftest import http
from tests.reliability.stack import run_dir, wait_until
from tests.vision import files

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

CLIENTS = 32
SOAK_SECONDS = float(os.environ.get("RELIABILITY_SOAK_SECONDS") or 0)
LOAD_OPS_PER_CLIENT = 10 if not SOAK_SECONDS else 1_000_000  # the soak is bounded by time only
LOAD_MAX_SECONDS = SOAK_SECONDS or 60.0
ALLOWED_5XX = {503}  # documented: no ready worker / queue unavailable, with Retry-After
# Shares of the mix: chat (plain), chat (streamed), job upload, job poll.
MIX = [("chat", 0.35), ("chat_stream", 0.2), ("job_submit", 0.2), ("job_poll", 0.25)]


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    bad: list[str] = field(default_factory=list)
    job_ids: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, status: int, seconds: float, detail: str = "") -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.statuses[kind][status] += 1
            if status == 0 or (status >= 500 and status not in ALLOWED_5XX):
                self.bad.append(f"{kind} {status}: {detail[:300]}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _chat_body(rng: random.Random, stream: bool) -> dict:
    return {
        "model": "qwen3-vl-2b",
        "messages": [{"role": "user", "content": f"Load test {rng.randrange(10**9)}: say hello."}],
        "max_tokens": 4,
        "temperature": 0.7,
        "stream": stream,
    }


def _client_loop(index: int, base_url: str, key: str, results: Results, stop_at: float) -> None:
    rng = random.Random(index)
    png = files.image_bytes("PNG", (64, 48), "red")
    mine: list[int] = []
    with http(base_url, key, timeout=90) as client:
        for _ in range(LOAD_OPS_PER_CLIENT):
            if time.monotonic() > stop_at:
                return
            kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
            if kind == "job_poll" and not mine:
                kind = "job_submit"
            started = time.monotonic()
            try:
                status, detail = _one(client, kind, rng, png, mine)
            except httpx.HTTPError as exc:
                status, detail = 0, f"{type(exc).__name__}: {exc}"
            results.record(kind, status, time.monotonic() - started, detail)
    with results.lock:
        results.job_ids.extend(mine)


def _one(client: httpx.Client, kind: str, rng: random.Random, png: bytes, mine: list[int]) -> tuple[int, str]:
    if kind == "chat":
        response = client.post("/v1/chat/completions", json=_chat_body(rng, False))
        if response.status_code == 200:
            assert response.json()["choices"][0]["finish_reason"] in ("stop", "length")
        return response.status_code, response.text
    if kind == "chat_stream":
        with client.stream("POST", "/v1/chat/completions", json=_chat_body(rng, True)) as response:
            body = "".join(response.iter_text())
            if response.status_code == 200 and not body.rstrip().endswith("data: [DONE]"):
                return 599, f"stream did not end with [DONE]: {body[-300:]}"  # counted as a failure
            return response.status_code, body
    if kind == "job_submit":
        response = client.post(
            "/api/jobs",
            data={"task": "caption", "max_tokens": "4"},
            # distinct bytes per upload: the duplicate check would otherwise reuse one document
            files={"file": (f"p{rng.randrange(10**9)}.png", png + rng.randbytes(8), "image/png")},
        )
        if response.status_code == 202:
            mine.append(response.json()["id"])
        return response.status_code, response.text
    response = client.get(f"/api/jobs/{rng.choice(mine)}")
    return response.status_code, response.text


def test_32_clients_mixed_load(stack_redis, start_worker, start_web, api_key):
    env = {"THROTTLE_USER_RATE": "off", "THROTTLE_ANON_RATE": "off"}
    worker = start_worker(env={**env, "VISION_MAX_BATCH": "8"}, concurrency=8)
    web = start_web(env=env)
    worker.wait_ready()
    _, key = api_key("load")
    results = Results()
    started = time.monotonic()
    stop_at = started + LOAD_MAX_SECONDS
    threads = [
        threading.Thread(target=_client_loop, args=(i, web.url, key, results, stop_at), daemon=True)
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=LOAD_MAX_SECONDS + 120)
    assert not any(thread.is_alive() for thread in threads), "a client did not stop"
    load_s = time.monotonic() - started

    from django.db.models import Count

    from vision.models import Job

    def all_finished() -> bool:
        return (
            not Job.objects.filter(pk__in=results.job_ids)
            .exclude(status__in=["succeeded", "failed", "cancelled"])
            .exists()
        )

    wait_until(all_finished, timeout=180, interval=1, what="every accepted job to finish")
    drain_s = time.monotonic() - started - load_s
    job_states = dict(
        Job.objects.filter(pk__in=results.job_ids).values_list("status").annotate(n=Count("id")).order_by()
    )
    with httpx.Client(timeout=5) as client:
        healthy = client.get(f"{web.url}/healthz").status_code

    everything = [s for values in results.latencies.values() for s in values]
    report = {
        "clients": CLIENTS,
        "requests": len(everything),
        "load_seconds": round(load_s, 1),
        "drain_seconds": round(drain_s, 1),
        "throughput_rps": round(len(everything) / load_s, 1),
        "jobs_accepted": len(results.job_ids),
        "job_states": job_states,
        "statuses": {kind: dict(codes) for kind, codes in results.statuses.items()},
        "latency_s": {
            kind: {
                "n": len(values),
                "p50": round(_percentile(values, 50), 3),
                "p95": round(_percentile(values, 95), 3),
                "p99": round(_percentile(values, 99), 3),
                "mean": round(statistics.fmean(values), 3),
            }
            for kind, values in sorted({**results.latencies, "all": everything}.items())
        },
        "soak": bool(SOAK_SECONDS),
    }
    out = run_dir() / "load-results.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\n[load] {json.dumps(report, indent=2)}\n[load] written to {out}")

    assert not results.bad, results.bad[:10]
    assert len(everything) >= 200 or SOAK_SECONDS, report
    assert job_states.get("succeeded", 0) == len(results.job_ids), job_states
    assert healthy == 200
