"""Engine-only benchmarks (prefix reuse, head-of-line blocking, batching): their flags, and the run they
share; each bench itself is in its own module (`prefix_reuse.py`, `hol.py`, `batching.py`).

Each loads the checkpoint once through the engine's own loading path (`load_for_engine`: load fp32,
convert to the configured formats) and shares that one model between the engines it compares
(`Engine(config, loaded=...)`), so the comparison is on the same weights in the same process.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import (
    PeakRss,
    RunInfo,
    checkpoint_tag,
    free_memory,
    machine_description,
    machine_markdown,
    publish,
    resolve_checkpoint,
    run_markdown,
)
from .images import ROWS_BY_KEY
from .runs import engine_config, format_label


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--checkpoint", default="2b", help="tiny, 2b or a checkpoint folder (default 2b)")
    parser.add_argument("--dtype", default="auto", help="weight formats (default auto: the engine's choice)")
    parser.add_argument("--threads", type=int, help="torch threads (default: physical cores)")
    parser.add_argument("--tag", help="results file suffix (default: checkpoint name)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    if name == "prefix-reuse":
        parser.add_argument("--image", default="document", choices=sorted(ROWS_BY_KEY), help="seed image")
        parser.add_argument("--tokens", type=int, default=16, help="answer length per turn")
        parser.add_argument("--repeats", type=int, default=1)
    elif name == "hol":
        parser.add_argument("--stream-tokens", type=int, default=64, help="tokens of each running stream")
        parser.add_argument(
            "--doc-pixels",
            choices=("default", "task"),
            default="default",
            help="document at the processor's default (full) resolution, or at our ocr budget",
        )
    elif name == "batching":
        parser.add_argument("--concurrency", default="1,2,4,8", help="concurrency levels (comma-separated)")
        parser.add_argument("--tokens", type=int, default=32, help="output tokens per request")
        parser.add_argument(
            "--image-size",
            default="448x336",
            help="each request's chart image size, WxH; 'none' for text-only requests",
        )


def run(args: argparse.Namespace) -> dict:
    from vision.engine.startup import configure_threads, load_for_engine

    from .machine import measure_memory_bandwidth

    path = resolve_checkpoint(args.checkpoint)
    tag = checkpoint_tag(args)
    run_info = RunInfo.start(args.argv)
    configure_threads(args.threads)
    bandwidth = measure_memory_bandwidth()
    with PeakRss() as rss:
        t0 = time.perf_counter()
        loaded, formats, _ = load_for_engine(engine_config(path, args))
        load_s = time.perf_counter() - t0
    print(f"[bench] {args.command}: formats {formats}, loaded in {load_s:.1f} s, peak {rss.peak_mib:.0f} MiB")
    from .batching import batching
    from .hol import head_of_line
    from .prefix_reuse import prefix_reuse

    bench = {"prefix-reuse": prefix_reuse, "hol": head_of_line, "batching": batching}[args.command]
    with PeakRss() as rss:
        result = bench(args, path, loaded)
    del loaded
    free_memory()
    run_info.finish()
    run_info.machine = machine_description(bandwidth)
    data = {
        "kind": args.command,
        "run": run_info.to_dict(),
        "formats": formats,
        "dtype_setting": args.dtype,
        "load_s": round(load_s, 1),
        "peak_rss_mib": rss.peak_mib,
        **result,
    }
    md = [f"# {TITLES[args.command]}", "", machine_markdown(run_info.machine), "", run_markdown(run_info), ""]
    md.append(f"Weights: `{args.dtype}` → {format_label(formats)}; peak RSS {rss.peak_mib:.0f} MiB.")
    md += ["", result.pop("markdown")]
    data.pop("markdown", None)
    markdown = "\n".join(md)
    publish(args.command, tag, data, markdown, getattr(args, "out", None))
    return data


TITLES = {
    "prefix-reuse": "Prefix reuse: turns 2 and 3 about the same image",
    "hol": "Head-of-line blocking: a full-size document arrives while 2 streams decode",
    "batching": "Batching: concurrent requests vs one at a time",
}
