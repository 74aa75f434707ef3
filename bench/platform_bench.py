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
import json
import shutil
import statistics
from pathlib import Path

from .common import (
    RESULTS_DIR,
    RunInfo,
    checkpoint_tag,
    md_table,
    publish,
    run_markdown,
)
from .platform_stack import start_stack
from .web_clients import CHAT_PATH, ClientResult, ThreadSampler, burst, chat_body, data_url, probe


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


# -- the two benches ------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    web = args.command == "web-streams"
    tag = checkpoint_tag(args)
    size = tuple(int(v) for v in args.image_size.lower().split("x"))
    levels = [args.clients] if web else sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    run_info = RunInfo.start(args.argv)
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
        ok, why, force = probe(base_url, key, args, size)
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
    data = {
        "kind": args.command,
        "run": run_info.to_dict(),
        "checkpoint": args.checkpoint,
        "dtype": args.dtype,
        **result,
    }
    md = [
        f"# {'Web side: concurrent streaming clients' if web else 'Through the platform'}",
        "",
        run_markdown(run_info),
        "",
    ]
    if not ok:
        md.append(f"**Not measured**: {why}.")
    else:
        md.append(result.pop("markdown"))
        data.pop("markdown", None)
    markdown = "\n".join(md)
    publish(args.command, tag, data, markdown, getattr(args, "out", None))
    return 0 if ok else 1


def _platform(base_url: str, key: str, args, size, levels: list[int], tag: str, force: bool) -> dict:
    counter = iter(range(1_000_000))

    def bodies(n: int) -> list[dict]:
        return [chat_body(args.model, data_url(next(counter), size), args.tokens, force) for _ in range(n)]

    top = max(levels)
    # One at a time, like the engine bench's baseline.
    seq_results, seq_wall = [], 0.0
    for body in bodies(top):
        results, wall = asyncio.run(burst(base_url, key, [body], 1800))
        seq_results += results
        seq_wall += wall
    sequential = _stats(seq_results, seq_wall, args.tokens)
    print(f"[bench]   platform one-at-a-time x{top}: {sequential}")
    out = {}
    for n in levels:
        results, wall = asyncio.run(burst(base_url, key, bodies(n), 1800))
        stats = _stats(results, wall, args.tokens)
        stats["throughput_ratio"] = (
            round(stats["tokens_per_s"] / sequential["tokens_per_s"], 2)
            if sequential["tokens_per_s"]
            else None
        )
        out[n] = stats
        print(f"[bench]   platform concurrent {n}: {stats}")
    direct = _direct_engine(getattr(args, "out", None) or RESULTS_DIR, tag)
    rows = [
        [
            "one at a time",
            top,
            sequential["ok"],
            sequential["tokens_per_s"],
            sequential["mean_latency_s"],
            sequential["mean_ttft_s"],
            "1×",
            _direct(direct, "seq"),
        ]
    ]
    for n, s in out.items():
        rows.append(
            [
                f"{n} concurrent",
                n,
                s["ok"],
                s["tokens_per_s"],
                s["mean_latency_s"],
                s["mean_ttft_s"],
                f"{s['throughput_ratio']}×",
                _direct(direct, n),
            ]
        )
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
            ),
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
    bodies = [chat_body(args.model, data_url(20_000 + i, size), args.tokens, force) for i in range(n)]
    with ThreadSampler(web_pid) as threads:
        results, wall = asyncio.run(burst(base_url, key, bodies, 1800))
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
            ),
            "",
            f"All complete without errors: **{'yes' if all_ok else 'NO'}**; answers at full length: "
            f"{stats['full_length']}/{n}."
            + (f" First errors: {stats['errors']}" if not all_ok else "")
            + f" Web-process threads by name at the peak: {threads.names_at_max or 'not sampled (no pid)'}.",
        ]
    )
    return {"clients": n, "stats": stats, "all_ok": all_ok, "markdown": markdown}
