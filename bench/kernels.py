"""`python -m bench kernels`: one int8 linear layer at a time, ours vs torch's op vs dense GEMMs.

Per 2B linear shape and rows M: milliseconds, GB/s of weights, share of the measured read
bandwidth, and ratios. Weights cycle over distinct copies (about 1 GiB for int8, at least 512 MiB
for the others) so each call reads its weight from DRAM, as a decode step does. The variants of
one shape and M run interleaved, round after round, and each keeps its minimum: on a shared
machine a neighbour's burst then costs every variant one round, not one variant all of them.

Variants:
- ours: `Int8Linear` on the engine kernels' best path here (`kernels.active_isa()`); lower paths
  (e.g. avx2) are run too at M <= 8, forced with `kernels.use_isa`.
- int8pack: `Int8Linear` on torch's `_weight_int8pack_mm` (what runs without the kernels; bf16
  activations, a GEMV per row).
- dequant+bf16: the whole weight dequantized to bf16 on every call (twice), then a bf16 GEMM.
- ours-dense: `Int8Linear(prefill_dtype=bf16)`: 1024-column chunks dequantized, bf16 GEMM.
- w8a8: per-token int8 activations x int8 weights through `torch._int_mm` (oneDNN / MKL int8 GEMM).
- bf16 / fp32: `F.linear` on dense weights of that dtype (oneDNN / MKL).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

from .common import (
    RunInfo,
    free_memory,
    loadavg,
    machine_description,
    machine_markdown,
    md_table,
    publish,
    run_markdown,
)

# (name, out N, in K, rows): the 2B model's linears, fused forms the runtime builds, vision MLP.
SHAPES: tuple[tuple[str, int, int, tuple[int, ...]], ...] = (
    ("q / o", 2048, 2048, (1, 8, 32, 512)),
    ("k / v", 1024, 2048, (1, 8, 32, 512)),
    ("gate / up", 6144, 2048, (1, 8, 32, 512)),
    ("down", 2048, 6144, (1, 8, 32, 512)),
    ("qkv fused", 4096, 2048, (1, 8, 32, 512)),
    ("gate+up fused", 12288, 2048, (1, 8, 32, 512)),
    ("lm_head", 151936, 2048, (1, 8)),  # prefill computes logits of the last token only
    ("vision fc1", 4096, 1024, (32, 512)),
    ("vision fc2", 1024, 4096, (32, 512)),
)
INT8_BUDGET = 1 << 30
DENSE_BUDGET = 512 << 20
ROUNDS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shapes", help="comma-separated shape names (default: all); e.g. 'gate / up,lm_head'"
    )
    parser.add_argument("--rows", help="override the rows per shape, e.g. 1,8")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds per shape and M")
    parser.add_argument("--threads", type=int, help="torch threads (default: physical cores)")
    parser.add_argument("--tag", default="", help="results file suffix")
    parser.add_argument("--out", help="results folder (default bench/results)")


def _copies(bytes_per_copy: int, budget: int) -> int:
    return max(1, math.ceil(budget / bytes_per_copy))


def _timed(fn: Callable[[int], object], copies: int) -> float:
    """Seconds per call, averaged over one pass through every copy."""
    t0 = time.perf_counter()
    for i in range(copies):
        fn(i)
    return (time.perf_counter() - t0) / copies


def bench_shape(
    name: str, n: int, k: int, rows: tuple[int, ...], rounds: int, bandwidth: float
) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from vision.engine import kernels
    from vision.engine.quant import Int8Linear, W8A8Linear

    from .machine import measure_memory_bandwidth

    best_isa = kernels.active_isa()
    lower = [isa for isa in kernels.supported_isas() if isa not in ("ref", best_isa)]
    c8 = _copies(n * k, INT8_BUDGET)
    q = [torch.randint(-127, 128, (n, k), dtype=torch.int8) for _ in range(c8)]
    scales = torch.rand(n) * 1e-3 + 1e-4
    ours = [Int8Linear(w, scales, None) for w in q]
    ours_dense = [Int8Linear(w, scales, None, torch.bfloat16) for w in q[:2]]
    c_op = _copies(n * k, DENSE_BUDGET)
    with kernels.use_isa(kernels.TORCH_OP):
        op = [Int8Linear(w, scales, None) for w in q[:c_op]]
    while len(op) < c_op:  # fewer int8 copies than the budget wants (huge N): reuse them
        op.append(op[len(op) % c8])
    w8a8 = [W8A8Linear(layer.qweight_nk, scales, None) for layer in op]
    del q
    c16, c32 = _copies(2 * n * k, DENSE_BUDGET), _copies(4 * n * k, DENSE_BUDGET)
    w16 = [torch.randn(n, k, dtype=torch.bfloat16) * 0.02 for _ in range(c16)]
    w32 = [torch.randn(n, k) * 0.02 for _ in range(c32)]
    results = []
    with torch.no_grad():
        for m in rows:
            x32 = torch.randn(m, k)
            x16 = x32.bfloat16()
            many = m >= Int8Linear.PREFILL_MIN_ROWS
            cm = 2 if m >= 512 else None  # compute bound: cache does not matter, keep it short

            def n_copies(made: int, cm: int | None = cm) -> int:
                # A huge weight (lm_head: 622 MB in bf16) has one dense copy; never index past it.
                return min(cm, made) if cm else made

            variants: dict[str, tuple[Callable[[int], object], int]] = {
                "ours": (lambda i, x=x32: ours[i](x), n_copies(c8)),
                "bf16": (lambda i, x=x16: F.linear(x, w16[i]), n_copies(c16)),
                "fp32": (lambda i, x=x32: F.linear(x, w32[i]), n_copies(c32)),
            }
            if m <= 8:
                for isa in lower:

                    def forced(i: int, isa: str = isa, x: torch.Tensor = x32) -> object:
                        with kernels.use_isa(isa):
                            return ours[i](x)

                    variants[f"ours-{isa}"] = (forced, c8)
            if m <= 32:  # a GEMV per row: 512 rows take seconds per shape
                variants["int8pack"] = (lambda i, x=x32: op[i](x), n_copies(c_op))
            variants["w8a8"] = (lambda i, x=x32: w8a8[i](x), n_copies(c_op))
            if many:
                variants["ours-dense"] = (lambda i, x=x32: ours_dense[i](x), 2)
                variants["dequant+bf16"] = (
                    lambda i, x=x16: F.linear(x, op[i].qweight.to(torch.bfloat16) * op[i].scales[:, None]),
                    2,
                )
            for fn, copies in variants.values():  # warm up (first-call allocations, thread pool)
                fn(0)
                if copies > 1:
                    fn(1)
            best = {key: math.inf for key in variants}
            for _ in range(rounds):
                for key, (fn, copies) in variants.items():
                    best[key] = min(best[key], _timed(fn, copies))
                if not many:  # the bandwidth in the same rounds, so both see the same neighbours
                    bandwidth = max(bandwidth, measure_memory_bandwidth(reps=1))
            row = {"shape": name, "n": n, "k": k, "m": m, "isa": best_isa, "loadavg": loadavg()[0]}
            row["bandwidth_gbs"] = round(bandwidth, 2)
            row |= {f"{key}_ms": round(v * 1e3, 4) for key, v in best.items()}
            gbs = n * k / best["ours"] / 1e9
            row["ours_weight_gbs"] = round(gbs, 2)
            row["ours_bandwidth_pct"] = round(100 * gbs / bandwidth, 1)
            row["gflops"] = round(2 * m * n * k / best["ours"] / 1e9, 1)
            for key in ("int8pack", "w8a8", "bf16", "fp32", "dequant+bf16", "ours-dense"):
                if key in best:
                    row[f"vs_{key}"] = round(best[key] / best["ours"], 2)
            results.append(row)
            print(f"[bench] kernels {row}", flush=True)
    return results


def start_run(args: argparse.Namespace) -> tuple[RunInfo, int, float]:
    """What a one-layer kernel bench does first: torch's threads, the run's context, a check that the
    engine kernels built, and the read bandwidth. Returns (run info, threads, bandwidth GB/s)."""
    from vision.engine import kernels
    from vision.engine.startup import configure_threads

    from .machine import measure_memory_bandwidth

    threads = configure_threads(args.threads)
    run_info = RunInfo.start(args.argv)
    if kernels.module() is None:
        raise SystemExit("the engine kernels did not build here; see the warning above")
    return run_info, threads, measure_memory_bandwidth()


def each_shape(args: argparse.Namespace, shapes: tuple, bench: Callable[..., list[dict]]) -> list[dict]:
    """`bench(name, n, k, rows)` for every one of `shapes` (name, N, K, rows) that `--shapes` selects,
    at `--rows` or the shape's own rows."""
    wanted = {s.strip() for s in args.shapes.split(",")} if args.shapes else None
    rows_override = tuple(int(r) for r in args.rows.split(",")) if args.rows else None
    results: list[dict] = []
    for name, n, k, rows in shapes:
        if wanted is None or name in wanted:
            results += bench(name, n, k, rows_override or rows)
            free_memory()
    return results


def run(args: argparse.Namespace) -> dict:
    from vision.engine import kernels

    run_info, threads, bandwidth = start_run(args)
    results = each_shape(
        args, SHAPES, lambda name, n, k, rows: bench_shape(name, n, k, rows, args.rounds, bandwidth)
    )
    run_info.finish()
    run_info.machine = machine_description(bandwidth) | {
        "kernel_isa": kernels.active_isa(),
        "kernel_isas": kernels.supported_isas(),
        "threads": threads,
    }
    data = {"kind": "kernels", "run": run_info.to_dict(), "results": results, "targets": targets(results)}
    markdown = render(data)
    publish("kernels", args.tag, data, markdown, Path(args.out) if args.out else None)
    return data


def targets(results: list[dict]) -> dict:
    """The three targets for one int8 layer (M=1 at memory speed, M=8 near M=1, M >= 32 no slower than
    dense), judged per shape."""
    by = {(r["shape"], r["m"]): r for r in results}
    out: dict[str, list] = {"m1_bandwidth_pct": [], "m8_over_m1": [], "many_rows_vs_dense": []}
    for (shape, m), r in by.items():
        if m == 1:
            out["m1_bandwidth_pct"].append([shape, r["ours_bandwidth_pct"], r["ours_bandwidth_pct"] >= 85])
            if (shape, 8) in by:
                ratio = round(by[(shape, 8)]["ours_ms"] / r["ours_ms"], 2)
                out["m8_over_m1"].append([shape, ratio, ratio <= 1.3])
        if m >= 32:
            dense = min(r["bf16_ms"], r["fp32_ms"])
            out["many_rows_vs_dense"].append(
                [f"{shape} M={m}", round(dense / r["ours_ms"], 2), r["ours_ms"] <= dense]
            )
    return out


def render(data: dict) -> str:
    run = data["run"]
    machine = run["machine"]
    info = RunInfo.from_dict(run)
    rows = []
    for r in data["results"]:
        lower = ", ".join(
            f"{k[5:-3]} {v:.3g}"
            for k, v in r.items()
            if k.startswith("ours-") and k.endswith("_ms") and k != "ours-dense_ms"
        )
        rows.append(
            [
                r["shape"],
                f"{r['n']}×{r['k']}",
                r["m"],
                r["ours_ms"],
                r["ours_weight_gbs"],
                f"{r['ours_bandwidth_pct']} %",
                r["gflops"],
                r.get("bandwidth_gbs"),
                lower or None,
                r.get("int8pack_ms"),
                r.get("w8a8_ms"),
                r["bf16_ms"],
                r["fp32_ms"],
                r.get("ours-dense_ms"),
                r.get("dequant+bf16_ms"),
                r.get("vs_int8pack") and f"{r['vs_int8pack']}×",
                f"{r['vs_bf16']}×",
                f"{r['vs_fp32']}×",
                r["loadavg"],
            ]
        )
    t = data["targets"]

    def judged(items: list, unit: str = "") -> str:
        return "; ".join(f"{name} {value}{unit} ({'met' if ok else 'MISSED'})" for name, value, ok in items)

    return "\n".join(
        [
            "# int8 weight-only linear: engine kernels vs torch and dense GEMMs",
            "",
            machine_markdown(machine),
            f"Kernel path: `{machine.get('kernel_isa')}` (this CPU runs {machine.get('kernel_isas')}); "
            f"{machine.get('threads')} threads.",
            "",
            run_markdown(info),
            "",
            "Milliseconds per call (min over interleaved rounds, weights from DRAM at M ≤ 32). "
            "GB/s = int8 weight bytes / time; % = of the read bandwidth (`bw`, a sum over 512 MiB, best of the start "
            "and the row's own rounds). "
            "`vs X` = X's time / ours (above 1: ours is faster).",
            "",
            md_table(
                [
                    "shape",
                    "N×K",
                    "M",
                    "ours ms",
                    "GB/s",
                    "of bw",
                    "GFLOP/s",
                    "bw GB/s",
                    "ours, lower paths ms",
                    "int8pack ms",
                    "w8a8 ms",
                    "bf16 ms",
                    "fp32 ms",
                    "ours-dense ms",
                    "dequant+bf16 ms",
                    "vs int8pack",
                    "vs bf16",
                    "vs fp32",
                    "load",
                ],
                rows,
            ),
            "",
            "Targets:",
            f"- M=1 reads weights at ≥ 85 % of the read bandwidth: {judged(t['m1_bandwidth_pct'], ' %')}",
            f"- M=8 costs ≤ 1.3× M=1: {judged(t['m8_over_m1'], '×')}",
            f"- M ≥ 32 at least as fast as the faster dense GEMM (dense / ours): {judged(t['many_rows_vs_dense'], '×')}",
        ]
    )
