"""The article's latency table, baseline vs our engine, plus decode speed vs the bandwidth floor.

Memory rule: never two 2B models at once. Phase 1 loads one fp32 model and shares it between the
baseline (transformers `generate`) and our engine at fp32, interleaving baseline / ours per row so
drift cancels. Each further phase frees it and lets the engine load the checkpoint itself in one
weight format (the production path: load fp32, convert), then runs the same rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vision.engine import Engine, EngineConfig, ImagePart, PixelBudget

from . import chart
from .common import (
    TARGETS,
    PeakRss,
    RunInfo,
    checkpoint_tag,
    free_memory,
    machine_description,
    publish,
    resolve_checkpoint,
    rss_bytes,
)
from .images import ROWS_BY_KEY, SEED_ROWS, SeedRow, render
from .runs import (
    Measurement,
    baseline_generate,
    engine_measure,
    format_label,
    image_request,
    same_pixels_budget,
    warm_up_baseline,
    warm_up_engine,
)
from .seed_report import render_markdown

DECODE_PROMPT = "Write a long, detailed story about a lighthouse keeper."


def add_arguments(parser: argparse.ArgumentParser, *, seed_table: bool = True) -> None:
    parser.add_argument("--checkpoint", default="2b", help="tiny, 2b or a checkpoint folder (default 2b)")
    parser.add_argument(
        "--dtypes",
        default="fp32,bf16,int8,auto",
        help="our engine's weight formats, comma-separated (auto = what the engine picks; default all four)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: physical cores)")
    parser.add_argument("--decode-tokens", type=int, default=32, help="tokens for the decode-floor run")
    parser.add_argument("--tag", help="results file suffix (default: checkpoint name)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    if seed_table:
        parser.add_argument(
            "--rows",
            default=",".join(r.key for r in SEED_ROWS),
            help="seed rows, comma-separated (default all)",
        )
        parser.add_argument("--repeats", type=int, default=1, help="runs per row and side (median kept)")
        parser.add_argument(
            "--tokens", type=int, help="override every row's output length (default: the article's per row)"
        )
        parser.add_argument(
            "--modes",
            default="same,defaults",
            help="our pixel settings: same (baseline's pixels), defaults (task budget); comma-separated",
        )
        parser.add_argument("--no-baseline", action="store_true", help="skip the transformers baseline")
        parser.add_argument("--no-decode-floor", action="store_true", help="skip the decode-floor runs")


@dataclass
class Phase:
    """Everything measured with one set of weights in memory."""

    dtype_setting: str  # what was asked: fp32 / bf16 / int8 / auto
    formats: dict[str, str] = field(default_factory=dict)  # what the engine runs
    load_s: float = 0.0
    load_peak_rss_mib: float = 0.0
    rss_loaded_mib: float = 0.0  # resident right after loading (+ conversion)
    rss_trimmed_mib: float = 0.0  # after gc + malloc_trim: what the weights really need
    measurements: dict[str, list[Measurement]] = field(default_factory=dict)  # "<row>|<pixels>" -> runs
    decode: dict = field(default_factory=dict)


def _median(runs: list[Measurement]) -> Measurement:
    """The run with the median end-to-end time (a real run, so its fields stay consistent)."""
    ordered = sorted(runs, key=lambda m: m.e2e_s)
    return ordered[(len(ordered) - 1) // 2]


def layer_dims(path: Path):
    """The checkpoint's own shapes (the floor of the tiny model is not the 2B model's)."""
    import json

    from vision.engine.autotune_timing import LayerDims

    text = json.loads((path / "config.json").read_text())["text_config"]
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    return LayerDims(
        hidden=text["hidden_size"],
        q_out=text["num_attention_heads"] * head_dim,
        kv_out=text["num_key_value_heads"] * head_dim,
        intermediate=text["intermediate_size"],
        num_layers=text["num_hidden_layers"],
        vocab=text["vocab_size"],
    )


def measure_decode(engine: Engine, tokens: int, lm_format: str, path: Path, rounds: int = 3) -> dict:
    """Our seconds per token for one text-only stream vs the floor (weight bytes / bandwidth),
    the bandwidth taken around each of `rounds` streams (`runs.paired_decode`): the per-round
    floor fraction's median is the verdict."""
    from .machine import bandwidth_floor_s, weight_bytes_per_token
    from .runs import paired_decode

    fmt = lm_format if lm_format in ("fp32", "bf16", "int8", "int4", "w8a8") else "fp32"
    dims = layer_dims(path)
    paired = paired_decode(
        engine, DECODE_PROMPT, tokens, rounds, lambda gbs: bandwidth_floor_s(fmt, gbs, dims)
    )
    return {
        "lm_format": fmt,
        "tokens": tokens,
        "weight_bytes_per_token": int(weight_bytes_per_token(fmt, dims)),
        "bandwidth_gbs": paired["bandwidth_gbs"],
        "floor_s_per_token": paired["floor_s_per_token"],
        "measured_s_per_token": paired["s_per_token"],  # median over rounds of each stream's median gap
        "floor_fraction": paired["floor_fraction"],  # 1.0 = at the floor; target >= 0.85
        "floor_fraction_vs_best_bandwidth": paired["floor_fraction_vs_best_bandwidth"],
        "best_bandwidth_gbs": paired["best_bandwidth_gbs"],
        "rounds": paired["rounds"],
    }


def _open_engine(path: Path, dtype: str, threads: int | None, loaded=None) -> Engine:
    # No caches: every timed request must recompute its image and prompt, as the baseline does.
    config = EngineConfig(
        model=str(path), dtype=dtype, threads=threads, vision_cache_mb=0, kv_cache_mb=0, max_batch_size=8
    )
    return Engine(config, loaded=loaded).load()


def run(args: argparse.Namespace, *, rows: list[SeedRow] | None = None) -> dict:
    from vision.engine.pretrained import load_model
    from vision.engine.startup import configure_threads

    from .machine import measure_memory_bandwidth

    path = resolve_checkpoint(args.checkpoint)
    tag = checkpoint_tag(args)
    rows = rows if rows is not None else [ROWS_BY_KEY[k] for k in _csv(getattr(args, "rows", ""))]
    dtypes = _csv(args.dtypes)
    modes = _csv(getattr(args, "modes", "same,defaults"))
    repeats = max(1, getattr(args, "repeats", 1))
    with_baseline = bool(rows) and not getattr(args, "no_baseline", False)
    with_decode = not getattr(args, "no_decode_floor", False)
    run_info = RunInfo.start(args.argv)
    threads = configure_threads(args.threads)
    bandwidth = [measure_memory_bandwidth()]
    print(
        f"[bench] memory read bandwidth {bandwidth[0]:.1f} GB/s, {threads} threads, load {run_info.loadavg_start}"
    )
    images = {row.key: render(row.key) for row in rows}
    parts = {key: ImagePart.from_image(img) for key, img in images.items()}
    baseline: dict[str, list[Measurement]] = {}
    # The baseline's resized size per row, from the processor alone (checked against each baseline run).
    baseline_hw = {key: processor_default_hw(path, img) for key, img in images.items()}
    phases: list[Phase] = []

    def run_rows(engine: Engine, phase: Phase, row: SeedRow) -> None:
        tokens = args.tokens or row.tokens
        for mode in modes:
            if mode == "same":
                budget, label = same_pixels_budget(*baseline_hw[row.key]), "same as baseline"
            else:
                budget, label = PixelBudget.for_task(row.task), f"task budget ({row.task})"
            request = image_request(parts[row.key], row.prompt, tokens, task=row.task, pixels=budget)
            m = engine_measure(engine, request, dtype=format_label(phase.formats), pixels=label)
            phase.measurements.setdefault(f"{row.key}|{mode}", []).append(m)
            print(f"[bench]   ours {phase.dtype_setting:5s} {row.key:9s} {mode:8s} {_brief(m)}")

    first_dtypes = [d for d in dtypes if d == "fp32"]
    if with_baseline or first_dtypes:
        # Phase 1: one fp32 model shared by the baseline and our fp32 engine.
        phase = Phase("fp32")
        with PeakRss() as rss:
            t0 = time.perf_counter()
            loaded = load_model(str(path), dtype=torch.float32, progress=False)
            phase.load_s = round(time.perf_counter() - t0, 1)
        phase.load_peak_rss_mib = rss.peak_mib
        _settle(phase)
        engine = _open_engine(path, "fp32", threads, loaded) if first_dtypes else None
        if engine is not None:
            phase.formats = engine.status().formats
            warm_up_engine(engine)
        if with_baseline:
            warm_up_baseline(loaded)
        for rep in range(repeats):
            for row in rows:
                if with_baseline:
                    m, hw = baseline_generate(loaded, images[row.key], row.prompt, args.tokens or row.tokens)
                    baseline.setdefault(row.key, []).append(m)
                    if hw != baseline_hw[row.key]:
                        raise RuntimeError(
                            f"baseline resized {row.key} to {hw}, expected {baseline_hw[row.key]}"
                        )
                    print(f"[bench] rep {rep} baseline       {row.key:9s} {'default':8s} {_brief(m)}")
                if engine is not None:
                    run_rows(engine, phase, row)
        if engine is not None:
            if with_decode:
                phase.decode = measure_decode(engine, args.decode_tokens, phase.formats["lm"], path)
                print(f"[bench]   decode fp32: {phase.decode}")
            engine.shutdown()
            phases.append(phase)
        del engine, loaded
        free_memory()

    for dtype in dtypes:
        if dtype == "fp32":
            continue
        phase = Phase(dtype)
        with PeakRss() as rss:
            t0 = time.perf_counter()
            engine = _open_engine(path, dtype, threads)
            phase.load_s = round(time.perf_counter() - t0, 1)
        phase.load_peak_rss_mib = rss.peak_mib
        _settle(phase)
        phase.formats = engine.status().formats
        print(f"[bench] phase {dtype}: formats {phase.formats}, loaded in {phase.load_s} s")
        warm_up_engine(engine)
        for _ in range(repeats):
            for row in rows:
                run_rows(engine, phase, row)
        if with_decode:
            phase.decode = measure_decode(engine, args.decode_tokens, phase.formats["lm"], path)
            print(f"[bench]   decode {dtype}: {phase.decode}")
        engine.shutdown()
        phases.append(phase)
        del engine
        free_memory()

    bandwidth.append(measure_memory_bandwidth())
    run_info.finish()
    run_info.machine = machine_description(max(bandwidth))
    data = _assemble(rows, baseline, phases, run_info, bandwidth, args)
    markdown = render_markdown(data)
    out_dir = getattr(args, "out", None)
    json_path, _ = publish("seed-table" if rows else "decode-floor", tag, data, markdown, out_dir)
    if rows and with_baseline:
        png = json_path.with_suffix(".png")
        chart.seed_chart(data, png)
        print(f"[bench] chart: {png}")
    return data


def processor_default_hw(path: Path, image) -> tuple[int, int]:
    """(height, width) the processor's DEFAULT pixel settings resize `image` to (what the baseline sees)."""
    from vision.engine.pretrained import load_processor

    processor = load_processor(path)
    grid = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
    return int(grid[1]) * 16, int(grid[2]) * 16


def _settle(phase: Phase) -> None:
    phase.rss_loaded_mib = round(rss_bytes() / 2**20, 1)
    free_memory()
    phase.rss_trimmed_mib = round(rss_bytes() / 2**20, 1)


def _csv(text: str) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _brief(m: Measurement) -> str:
    return (
        f"img {m.image_tokens:5d} tok, e2e {m.e2e_s:7.2f} s, ttft {m.ttft_s:7.2f} s, "
        f"decode {m.decode_tok_s:6.2f} tok/s, rss {m.peak_rss_mib:.0f} MiB"
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _assemble(rows, baseline, phases: list[Phase], run_info: RunInfo, bandwidth: list[float], args) -> dict:
    table = []
    for row in rows:
        base = _median(baseline[row.key]) if row.key in baseline else None
        entry = {
            "row": row.key,
            "label": row.label,
            "size": f"{row.width}x{row.height}",
            "tokens": args.tokens or row.tokens if hasattr(args, "tokens") else row.tokens,
            "article_s": row.article_s,
            "task": row.task,
            "baseline": base.to_dict() if base else None,
            "baseline_runs": [m.e2e_s for m in baseline.get(row.key, [])],
            "ours": {},
        }
        for phase in phases:
            per_mode = {}
            for mode in ("same", "defaults"):
                runs = phase.measurements.get(f"{row.key}|{mode}")
                if not runs:
                    continue
                m = _median(runs)
                per_mode[mode] = {
                    **m.to_dict(),
                    "runs_e2e_s": [r.e2e_s for r in runs],
                    "speedup_e2e": _ratio(base.e2e_s, m.e2e_s) if base else None,
                    "speedup_ttft": _ratio(base.ttft_s, m.ttft_s) if base else None,
                }
            entry["ours"][phase.dtype_setting] = per_mode
        table.append(entry)
    headline = None
    if "auto" in [p.dtype_setting for p in phases]:
        ratios = [e["ours"]["auto"].get("defaults", {}).get("speedup_e2e") for e in table]
        ratios = [r for r in ratios if r]
        if ratios:
            headline = round(statistics.geometric_mean(ratios), 2)
    return {
        "kind": "seed-table" if rows else "decode-floor",
        "run": run_info.to_dict(),
        "bandwidth_gbs_runs": [round(b, 2) for b in bandwidth],
        "rows": table,
        "phases": [
            {
                "dtype": p.dtype_setting,
                "formats": p.formats,
                "load_s": p.load_s,
                "load_peak_rss_mib": p.load_peak_rss_mib,
                "rss_loaded_mib": p.rss_loaded_mib,
                "rss_trimmed_mib": p.rss_trimmed_mib,
                "decode": p.decode,
            }
            for p in phases
        ],
        "targets": {
            "end_to_end_speedup_geomean_auto_defaults": headline,
            "end_to_end_target": TARGETS["end_to_end_speedup"],
            "decode_floor_target": TARGETS["decode_floor_fraction"],
        },
    }
