"""The platform benches' HTTP side: the `/v1/chat/completions` body, one streaming client and what
it saw, a readiness probe, and a sampler of the web process's threads and memory from /proc."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .common import rss_mb, thread_count
from .images import render

CHAT_PATH = "/v1/chat/completions"


def data_url(variant: int, size: tuple[int, int]) -> str:
    buf = io.BytesIO()
    render("chart", size=size, variant=variant).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def chat_body(model: str, image_url: str, tokens: int, force_length: bool) -> dict:
    body = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_tokens": tokens,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_url}},
                    {"type": "text", "text": "What trend does this chart show?"},
                ],
            }
        ],
    }
    if force_length:
        # vLLM-style extensions; an API that ignores them may stop early at an end token.
        body |= {"min_tokens": tokens, "ignore_eos": True}
    return body


@dataclass
class ClientResult:
    ok: bool
    status: int = 0
    error: str = ""
    ttft_s: float = 0.0
    e2e_s: float = 0.0
    completion_tokens: int = 0
    chunks: int = 0


async def _one_stream(client: httpx.AsyncClient, url: str, key: str, body: dict) -> ClientResult:
    t0 = time.perf_counter()
    first = None
    chunks = 0
    usage_tokens = 0
    try:
        async with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
            if r.status_code != 200:
                text = (await r.aread()).decode(errors="replace")[:500]
                return ClientResult(False, r.status_code, text)
            done = False
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    done = True
                    break
                event = json.loads(payload)
                if "error" in event:
                    return ClientResult(False, 200, json.dumps(event["error"])[:500])
                if event.get("usage"):
                    usage_tokens = event["usage"].get("completion_tokens", 0)
                for choice in event.get("choices", []):
                    if choice.get("delta", {}).get("content"):
                        chunks += 1
                        if first is None:
                            first = time.perf_counter()
            if not done:
                return ClientResult(False, 200, "stream ended without [DONE]")
    except (httpx.HTTPError, ValueError) as exc:
        return ClientResult(False, 0, f"{type(exc).__name__}: {exc}")
    end = time.perf_counter()
    return ClientResult(
        True, 200, "", round((first or end) - t0, 3), round(end - t0, 3), usage_tokens or chunks, chunks
    )


async def burst(
    base_url: str, key: str, bodies: list[dict], timeout: float
) -> tuple[list[ClientResult], float]:
    limits = httpx.Limits(max_connections=len(bodies) + 4, max_keepalive_connections=len(bodies) + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=30), limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_one_stream(client, base_url + CHAT_PATH, key, b) for b in bodies))
        return list(results), time.perf_counter() - t0


def probe(base_url: str, key: str, args: argparse.Namespace, size: tuple[int, int]) -> tuple[bool, str, bool]:
    """(endpoint works, why not, whether the length-forcing extensions are accepted)."""
    for force in (True, False):
        body = chat_body(args.model, data_url(10_000 + int(force), size), 2, force)
        results, _ = asyncio.run(burst(base_url, key, [body], 600))
        result = results[0]
        if result.ok:
            return True, "", force
        if result.status == 404:
            return False, f"{CHAT_PATH} answered 404: the endpoint is not there yet", False
        if not (result.status == 400 and force):
            return False, f"{CHAT_PATH} probe failed: HTTP {result.status} {result.error}", False
    return False, "probe failed", False


def _thread_names(pid: int) -> dict[str, int]:
    names: dict[str, int] = {}
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items(), key=lambda kv: -kv[1]))


class ThreadSampler:
    """Max thread count and resident memory of a process while a block runs."""

    def __init__(self, pid: int | None):
        self.pid, self.max, self.start_count = pid, 0, 0
        self.rss_start_mb = self.rss_max_mb = 0.0
        self.names_at_max: dict[str, int] = {}  # thread names (/proc/<pid>/task/*/comm) when it peaked
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                count = thread_count(self.pid)
                if count > self.max:
                    self.max, self.names_at_max = count, _thread_names(self.pid)
                self.rss_max_mb = max(self.rss_max_mb, rss_mb(self.pid))
            except OSError:
                return
            self._stop.wait(0.05)

    def __enter__(self) -> ThreadSampler:
        if self.pid:
            self.start_count = thread_count(self.pid)
            self.rss_start_mb = rss_mb(self.pid)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
