"""Through the platform: `/v1/chat/completions` over HTTP, the Celery queue and a worker's engine.

Talks HTTP only (httpx); never imports Django. Without --base-url it starts a private stack from
this checkout, on loopback and free ports, in a throwaway data folder: Redis, migrations, an admin
account, one Celery vision worker (threads pool) loading --checkpoint, and one uvicorn web process.
It logs in over HTTP, creates an API key, and runs:

- `platform`: the batching bench's requests (a distinct chart image each, N output tokens) at
  1/2/4/8 concurrent clients, streaming; printed beside the direct-engine numbers of
  bench/results/batching-<tag>.json when that file exists, so the web/queue overhead shows.
- `web-streams`: 64 concurrent streaming clients on the one web process: all complete? errors?
  how many threads did the web process have (sampled from /proc while they stream)?
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import shutil
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .common import (
    RESULTS_DIR,
    RunInfo,
    git_commit,
    md_table,
    rss_mb,
    run_markdown,
    thread_count,
    write_results,
)
from .images import render
from .platform_stack import start_stack

CHAT_PATH = "/v1/chat/completions"


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    web = name == "web-streams"
    parser.add_argument(
        "--checkpoint", default="tiny" if web else "2b", help="checkpoint for the private worker"
    )
    parser.add_argument("--dtype", default="auto", help="VISION_DTYPE of the private worker")
    parser.add_argument("--base-url", help="use a running platform instead of starting one (needs --api-key)")
    parser.add_argument("--api-key", help="Bearer token for --base-url")
    parser.add_argument("--web-pid", type=int, help="with --base-url: the web process to count threads of")
    parser.add_argument(
        "--keep-logs", metavar="DIR", help="copy the private stack's logs (web, worker, Redis) here"
    )
    parser.add_argument("--model", default="qwen3-vl-2b", help="model id sent in the body")
    parser.add_argument("--tokens", type=int, default=16 if web else 32, help="max_tokens per request")
    parser.add_argument("--image-size", default="448x336", help="chart image per request, WxH")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for the worker")
    parser.add_argument("--tag", help="results file suffix (default: checkpoint name)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    if web:
        parser.add_argument("--clients", type=int, default=64)
    else:
        parser.add_argument("--concurrency", default="1,2,4,8")


# -- clients -----------------------------------------------------------------------------------------
def _data_url(variant: int, size: tuple[int, int]) -> str:
    buf = io.BytesIO()
    render("chart", size=size, variant=variant).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _body(model: str, image_url: str, tokens: int, force_length: bool) -> dict:
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


async def _burst(
    base_url: str, key: str, bodies: list[dict], timeout: float
) -> tuple[list[ClientResult], float]:
    limits = httpx.Limits(max_connections=len(bodies) + 4, max_keepalive_connections=len(bodies) + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=30), limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_one_stream(client, base_url + CHAT_PATH, key, b) for b in bodies))
        return list(results), time.perf_counter() - t0


def _probe(
    base_url: str, key: str, args: argparse.Namespace, size: tuple[int, int]
) -> tuple[bool, str, bool]:
    """(endpoint works, why not, whether the length-forcing extensions are accepted)."""
    for force in (True, False):
        body = _body(args.model, _data_url(10_000 + int(force), size), 2, force)
        results, _ = asyncio.run(_burst(base_url, key, [body], 600))
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


# -- the two benches ------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    web = args.command == "web-streams"
    tag = args.tag or args.checkpoint.rstrip("/").split("/")[-1]
    size = tuple(int(v) for v in args.image_size.lower().split("x"))
    levels = [args.clients] if web else sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    run_info = RunInfo(command="python -m bench " + " ".join(args.argv), git_commit=git_commit())
    stack = None
    try:
        if args.base_url:
            if not args.api_key:
                raise SystemExit("--base-url needs --api-key")
            base_url, key, web_pid = args.base_url.rstrip("/"), args.api_key, args.web_pid
        else:
            print(f"[bench] starting a private platform (worker loads {args.checkpoint}, {args.dtype})")
            stack, key = start_stack(args, max(levels))
            base_url, web_pid = stack.base_url, stack.web_pid
        ok, why, force = _probe(base_url, key, args, size)
        result: dict = {
            "endpoint": CHAT_PATH,
            "available": ok,
            "reason": why,
            "length_extensions_accepted": force,
        }
        if ok:
            if web:
                result |= _web_streams(base_url, key, args, size, web_pid, force)
            else:
                result |= _platform(base_url, key, args, size, levels, tag, force)
    finally:
        if stack is not None:
            stack.stop()
            if args.keep_logs:
                kept = Path(args.keep_logs)
                kept.mkdir(parents=True, exist_ok=True)
                for log in stack.data_dir.glob("*.log"):
                    shutil.copy(log, kept / log.name)
            shutil.rmtree(stack.data_dir, ignore_errors=True)
    run_info.finish()
    data = {"kind": args.command, "run": run_info.to_dict(), "checkpoint": args.checkpoint, "dtype": args.dtype,
            **result}  # fmt: skip
    md = [f"# {'Web side: concurrent streaming clients' if web else 'Through the platform'}", "",
          run_markdown(run_info), ""]  # fmt: skip
    if not ok:
        md.append(f"**Not measured**: {why}.")
    else:
        md.append(result.pop("markdown"))
        data.pop("markdown", None)
    markdown = "\n".join(md)
    json_path, md_path = write_results(args.command, tag, data, markdown, getattr(args, "out", None))
    print(markdown)
    print(f"[bench] wrote {json_path} and {md_path}")
    return 0 if ok else 1


def _platform(base_url: str, key: str, args, size, levels: list[int], tag: str, force: bool) -> dict:
    counter = iter(range(1_000_000))

    def bodies(n: int) -> list[dict]:
        return [_body(args.model, _data_url(next(counter), size), args.tokens, force) for _ in range(n)]

    top = max(levels)
    # One at a time, like the engine bench's baseline.
    seq_results, seq_wall = [], 0.0
    for body in bodies(top):
        results, wall = asyncio.run(_burst(base_url, key, [body], 1800))
        seq_results += results
        seq_wall += wall
    sequential = _stats(seq_results, seq_wall, args.tokens)
    print(f"[bench]   platform one-at-a-time x{top}: {sequential}")
    out = {}
    for n in levels:
        results, wall = asyncio.run(_burst(base_url, key, bodies(n), 1800))
        stats = _stats(results, wall, args.tokens)
        stats["throughput_ratio"] = (
            round(stats["tokens_per_s"] / sequential["tokens_per_s"], 2)
            if sequential["tokens_per_s"]
            else None
        )
        out[n] = stats
        print(f"[bench]   platform concurrent {n}: {stats}")
    direct = _direct_engine(getattr(args, "out", None) or RESULTS_DIR, tag)
    rows = [["one at a time", top, sequential["ok"], sequential["tokens_per_s"], sequential["mean_latency_s"],
             sequential["mean_ttft_s"], "1×", _direct(direct, "seq")]]  # fmt: skip
    for n, s in out.items():
        rows.append([f"{n} concurrent", n, s["ok"], s["tokens_per_s"], s["mean_latency_s"], s["mean_ttft_s"],
                     f"{s['throughput_ratio']}×", _direct(direct, n)])  # fmt: skip
    markdown = "\n".join(
        [
            f"Private stack: uvicorn + Redis + one Celery worker (threads pool) with `{args.checkpoint}` at "
            f"`{args.dtype}`. Each request: a distinct {args.image_size} chart image as a data URL, "
            f"max_tokens {args.tokens}, streaming, min_tokens/ignore_eos sent "
            f"({'not rejected' if force else 'rejected, so left out'}; the answers that came back at full length: "
            f"{sequential['full_length'] + sum(s['full_length'] for s in out.values())}/"
            f"{sequential['ok'] + sum(s['ok'] for s in out.values())}).",
            "",
            md_table(
                [
                    "mode",
                    "requests",
                    "ok",
                    "aggregate tok/s",
                    "mean latency s",
                    "mean TTFT s",
                    "vs one at a time",
                    "direct engine tok/s (batching bench)",
                ],
                rows,
            ),  # fmt: skip
            "",
            "The last column comes from the batching bench's result file for the same checkpoint (same request "
            "shape, engine in-process, possibly another run): the gap is the web + Redis + Celery path."
            if direct
            else "No batching result file for this checkpoint: run `python -m bench batching` for the direct numbers.",
        ]
    )
    return {"tokens": args.tokens, "sequential": sequential, "concurrent": out, "markdown": markdown}


def _direct_engine(folder: Path, tag: str) -> dict | None:
    path = folder / f"batching-{tag}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _direct(direct: dict | None, level) -> float | None:
    if not direct:
        return None
    if level == "seq":
        return direct["sequential"]["tokens_per_s"]
    return direct["concurrent"].get(str(level), {}).get("tokens_per_s")


def _stats(results: list[ClientResult], wall: float, tokens_asked: int) -> dict:
    good = [r for r in results if r.ok]
    tokens = sum(r.completion_tokens for r in good)
    return {
        "requests": len(results),
        "ok": len(good),
        "full_length": sum(r.completion_tokens == tokens_asked for r in good),
        "errors": [f"{r.status} {r.error}"[:200] for r in results if not r.ok][:5],
        "wall_s": round(wall, 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 3) if wall else 0.0,
        "mean_latency_s": round(statistics.mean(r.e2e_s for r in good), 3) if good else None,
        "max_latency_s": round(max(r.e2e_s for r in good), 3) if good else None,
        "mean_ttft_s": round(statistics.mean(r.ttft_s for r in good), 3) if good else None,
    }


def _web_streams(base_url: str, key: str, args, size, web_pid: int | None, force: bool) -> dict:
    n = args.clients
    bodies = [_body(args.model, _data_url(20_000 + i, size), args.tokens, force) for i in range(n)]
    with ThreadSampler(web_pid) as threads:
        results, wall = asyncio.run(_burst(base_url, key, bodies, 1800))
    stats = _stats(results, wall, args.tokens)
    stats |= {
        "threads_before": threads.start_count or None,
        "threads_max": threads.max or None,
        "thread_names_at_max": threads.names_at_max,
        "rss_before_mb": threads.rss_start_mb or None,
        "rss_max_mb": threads.rss_max_mb or None,
    }
    all_ok = stats["ok"] == n
    markdown = "\n".join(
        [
            f"{n} clients open `stream: true` requests at once against one uvicorn process (private stack, worker "
            f"with `{args.checkpoint}`), each with its own {args.image_size} image and max_tokens {args.tokens}.",
            "",
            md_table(
                [
                    "clients",
                    "completed",
                    "errors",
                    "wall s",
                    "mean TTFT s",
                    "max latency s",
                    "web threads before",
                    "web threads max",
                    "web RSS before MB",
                    "web RSS max MB",
                ],
                [
                    [
                        n,
                        stats["ok"],
                        n - stats["ok"],
                        stats["wall_s"],
                        stats["mean_ttft_s"],
                        stats["max_latency_s"],
                        stats["threads_before"],
                        stats["threads_max"],
                        stats["rss_before_mb"],
                        stats["rss_max_mb"],
                    ]
                ],
            ),  # fmt: skip
            "",
            f"All complete without errors: **{'yes' if all_ok else 'NO'}**; answers at full length: "
            f"{stats['full_length']}/{n}."
            + (f" First errors: {stats['errors']}" if not all_ok else "")
            + f" Web-process threads by name at the peak: {threads.names_at_max or 'not sampled (no pid)'}.",
        ]
    )
    return {"clients": n, "stats": stats, "all_ok": all_ok, "markdown": markdown}
