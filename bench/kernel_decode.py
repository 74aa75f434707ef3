"""`python -m bench kernel-decode`: whole-model int8 decode at batch 1 and 8 per kernel path, each
path loaded in turn in one process, against the bandwidth floor of the same moment."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    RunInfo,
    checkpoint_tag,
    free_memory,
    loadavg,
    machine_description,
    machine_markdown,
    md_table,
    publish,
    run_markdown,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="2b", help="tiny, 2b or a checkpoint folder (default 2b)")
    parser.add_argument(
        "--paths", default="best,torch", help="kernel paths to compare: best, torch, avx2, ..."
    )
    parser.add_argument("--tokens", type=int, default=32, help="output tokens per stream")
    parser.add_argument(
        "--decode-rounds", type=int, default=3, help="batch-1 streams, each between bandwidth samples"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: physical cores)")
    parser.add_argument("--tag", help="results file suffix (default: checkpoint name)")
    parser.add_argument("--out", help="results folder (default bench/results)")


def _median_gap(traces: list) -> float:
    import statistics

    gaps = [g / n for t in traces for g, n in zip(t.gaps(), t.delta_tokens[1:], strict=False)]
    return statistics.median(gaps)


def _streams(engine, tokens: int) -> list:
    """8 concurrent streams: their traces."""
    from .runs import concurrent_streams, image_request
    from .seed_table import DECODE_PROMPT

    requests = [image_request(None, f"{DECODE_PROMPT} ({i})", tokens) for i in range(8)]
    return concurrent_streams(engine, requests)[0]


def run(args: argparse.Namespace) -> dict:
    """int8 decode s/token of the whole model at batch 1 and 8, per kernel path, same process."""
    from vision.engine import Engine, EngineConfig, kernels
    from vision.engine.startup import configure_threads, load_for_engine

    from .common import PeakRss, resolve_checkpoint
    from .machine import bandwidth_floor_s
    from .runs import paired_decode, warm_up_engine
    from .seed_table import DECODE_PROMPT, layer_dims

    path = resolve_checkpoint(args.checkpoint)
    tag = checkpoint_tag(args)
    threads = configure_threads(args.threads)
    run_info = RunInfo.start(args.argv)
    dims = layer_dims(path)
    rows: list[dict] = []
    bandwidths: list[float] = []
    for wanted in [p.strip() for p in args.paths.split(",") if p.strip()]:
        isa = kernels.supported_isas()[-1] if wanted == "best" else wanted
        with kernels.use_isa(isa):
            config = EngineConfig(
                model=str(path), dtype="int8", threads=args.threads, kv_cache_mb=0, vision_cache_mb=0
            )
            with PeakRss() as rss:
                loaded, formats, _ = load_for_engine(config)
            engine = Engine(config, loaded=loaded).load()
            warm_up_engine(engine)
            load_start = loadavg()[0]
            paired = paired_decode(
                engine,
                DECODE_PROMPT,
                args.tokens,
                args.decode_rounds,
                lambda gbs: bandwidth_floor_s("int8", gbs, dims),
            )
            bandwidths.append(paired["best_bandwidth_gbs"])
            traces = _streams(engine, args.tokens)
            engine.shutdown()
        b1, b8 = paired["s_per_token"], _median_gap(traces)
        row = {
            "path": isa,
            "formats": formats,
            "peak_rss_mib": rss.peak_mib,
            "bandwidth_gbs": paired["bandwidth_gbs"],
            "floor_s_per_token": paired["floor_s_per_token"],
            "batch1_s_per_token": b1,
            "batch1_floor_fraction": paired["floor_fraction"],
            "batch1_floor_fraction_vs_best_bandwidth": paired["floor_fraction_vs_best_bandwidth"],
            "best_bandwidth_gbs": paired["best_bandwidth_gbs"],
            "batch1_rounds": paired["rounds"],
            "batch8_s_per_step": round(b8, 4),
            "batch8_over_batch1": round(b8 / b1, 2),
            "batch8_tokens_per_s": round(8 / b8, 2),
            "loadavg": [load_start, loadavg()[0]],
        }
        rows.append(row)
        print(f"[bench] kernel-decode {row}", flush=True)
        del engine, loaded
        free_memory()
    run_info.finish()
    run_info.machine = machine_description(max(bandwidths)) | {"threads": threads}
    data = {"kind": "kernel-decode", "run": run_info.to_dict(), "results": rows}
    body = [
        [
            r["path"],
            r["bandwidth_gbs"],
            r["floor_s_per_token"],
            r["batch1_s_per_token"],
            f"{round(100 * r['batch1_floor_fraction'])} %",
            " / ".join(f"{round(100 * x['floor_fraction'])} %" for x in r["batch1_rounds"]),
            f"{round(100 * r['batch1_floor_fraction_vs_best_bandwidth'])} % ({r['best_bandwidth_gbs']} GB/s)",
            r["batch8_s_per_step"],
            f"{r['batch8_over_batch1']}×",
            r["batch8_tokens_per_s"],
            r["peak_rss_mib"],
            r["loadavg"],
        ]
        for r in rows
    ]
    markdown = "\n".join(
        [
            "# Whole-model int8 decode per kernel path",
            "",
            machine_markdown(run_info.machine),
            "",
            run_markdown(run_info),
            "",
            f"Text-only streams of {args.tokens} tokens, language model and lm_head int8 (`dtype=int8`), caches off. "
            f"Batch 1: {args.decode_rounds} rounds of three 512 MiB sums, one stream, three more sums "
            "(`bench/runs.py` `paired_decode`): a round's floor = int8 weight bytes per token / the median of its "
            "six sums, its s/token = the stream's median gap between tokens; *of floor* = the median over rounds "
            "of floor / s/token (per round beside it), *vs best* = against the fastest sum of the run. "
            "Batch 8 = 8 concurrent streams, s per decode step.",
            "",
            md_table(
                [
                    "path",
                    "bandwidth GB/s",
                    "floor s/token",
                    "batch 1 s/token",
                    "of floor",
                    "rounds",
                    "vs best (GB/s)",
                    "batch 8 s/step",
                    "batch 8 / batch 1",
                    "batch 8 tok/s",
                    "peak RSS MiB",
                    "load (start, end)",
                ],
                body,
            ),
        ]
    )
    publish("kernel-decode", tag, data, markdown, Path(args.out) if args.out else None)
    return data
