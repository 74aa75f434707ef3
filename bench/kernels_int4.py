"""`python -m bench kernels-int4`: one int4 linear at a time, our Q4_0 x Q8_0 kernel vs our int8
kernel and torch's int4 op, the way `bench kernels` times int8.

Per 2B linear shape and rows M: milliseconds and GB/s of the bytes each format stores for the
weight (int4 ours: K*N/2 + one fp32 scale per 32; int8: K*N + N scales; torch int4, group 64:
K*N/2 + a bf16 scale and zero per 64). Every variant cycles over distinct copies of ~1 GiB (torch's
int4 ~512 MiB: it is 10-50x slower, so still DRAM-bound) so each call reads its weight from DRAM;
variants of one shape and M run interleaved, round after round, each keeping its minimum.

Variants: int4 (Int4Linear on the best kernel path), int4-<isa> (lower paths forced, M <= 8),
int8 (Int8Linear, best path), torch-int4 (`_weight_int4pack_mm_for_cpu`, bf16 activations, g=64).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from .common import loadavg, machine_description, md_table, publish
from .kernels import _timed, each_shape, start_run

SHAPES: tuple[tuple[str, int, int, tuple[int, ...]], ...] = (
    ("q / o", 2048, 2048, (1, 8, 32)),
    ("gate / up", 6144, 2048, (1, 8, 32)),
    ("down", 2048, 6144, (1, 8, 32)),
    ("gate+up fused", 12288, 2048, (1, 8, 32)),
    ("lm_head", 151936, 2048, (1, 8)),
)
BUDGET = 1 << 30
TORCH_BUDGET = 512 << 20
ROUNDS = 3
TORCH_GROUP = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", help="comma-separated shape names (default: all)")
    parser.add_argument("--rows", help="override the rows per shape, e.g. 1,8")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds per shape and M")
    parser.add_argument("--threads", type=int, help="torch threads (default: physical cores)")
    parser.add_argument("--tag", default="", help="results file suffix")
    parser.add_argument("--out", help="results folder (default bench/results)")


def _copies(nbytes: int, budget: int) -> list[int]:
    return list(range(max(1, math.ceil(budget / nbytes))))


def bench_shape(name: str, n: int, k: int, rows: tuple[int, ...], rounds: int) -> list[dict]:
    import torch

    from vision.engine import kernels
    from vision.engine.quant import Int4Linear, Int8Linear

    best = kernels.active_isa()
    lower = [isa for isa in kernels.supported_isas() if isa not in ("ref", best)]
    nblk = k // kernels.BLOCK
    q4 = torch.randint(-8, 8, (n, k), dtype=torch.int8)
    packed4 = kernels.pack_int4(q4, torch.rand(n, nblk) * 1e-3 + 1e-4)
    bytes4 = packed4.numel()  # nibbles + scales
    int4 = [
        Int4Linear(packed4.clone(), None, None, k, n, kernels.BLOCK, kernel_layout=True)
        for _ in _copies(bytes4, BUDGET)
    ]
    q8 = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    s8 = torch.rand(n) * 1e-3 + 1e-4
    bytes8 = n * k + 4 * n
    int8 = [Int8Linear(q8, s8, None) for _ in _copies(bytes8, BUDGET)]
    del q8
    tq = torch.ops.aten._convert_weight_to_int4pack_for_cpu((q4.to(torch.int32) + 8), 1)
    del q4
    sz = (torch.rand(k // TORCH_GROUP, n, 2) * 1e-3).to(torch.bfloat16)
    bytes_t = tq.numel() + sz.numel() * 2
    torch_w = [tq.clone() for _ in _copies(bytes_t, TORCH_BUDGET)]
    weight_bytes = {"int4": bytes4, "int8": bytes8, "torch-int4": bytes_t}
    results = []
    with torch.no_grad():
        for m in rows:
            x = torch.randn(m, k)
            xb = x.bfloat16()
            variants: dict[str, tuple[Callable[[int], object], int]] = {
                "int4": (lambda i, x=x: int4[i](x), len(int4)),
                "int8": (lambda i, x=x: int8[i](x), len(int8)),
                "torch-int4": (
                    lambda i, x=xb: torch.ops.aten._weight_int4pack_mm_for_cpu(
                        x, torch_w[i], TORCH_GROUP, sz
                    ),
                    len(torch_w),
                ),
            }
            if m <= 8:
                for isa in lower:

                    def forced(i: int, isa: str = isa, x: torch.Tensor = x) -> object:
                        with kernels.use_isa(isa):
                            return int4[i](x)

                    variants[f"int4-{isa}"] = (forced, len(int4))
            best_s = {v: math.inf for v in variants}
            for fn, copies in variants.values():  # warm up: first touch, thread pool
                fn(0)
                fn(copies - 1)
            for _ in range(rounds):
                for v, (fn, copies) in variants.items():
                    best_s[v] = min(best_s[v], _timed(fn, copies))
            for v, s in best_s.items():
                wb = weight_bytes[v.split("-")[0] if v.startswith("int4") else v]
                results.append(
                    {
                        "shape": name,
                        "n": n,
                        "k": k,
                        "m": m,
                        "variant": v if v != "int4" else f"int4-{best}",
                        "ms": round(s * 1e3, 4),
                        "weight_gbs": round(wb / s / 1e9, 2),
                        "copies": variants[v][1],
                    }
                )
    return results


def run(args: argparse.Namespace) -> dict:
    from vision.engine import kernels

    run_info, threads, bandwidth = start_run(args)
    load_before = loadavg()
    results = each_shape(args, SHAPES, lambda name, n, k, rows: bench_shape(name, n, k, rows, args.rounds))
    run_info.finish()
    run_info.machine = machine_description(bandwidth) | {
        "kernel_isa": kernels.active_isa(),
        "threads": threads,
    }
    data = {
        "kind": "kernels-int4",
        "run": run_info.to_dict(),
        "loadavg": {"before": load_before, "after": loadavg()},
        "bandwidth_gbs": bandwidth,
        "results": results,
    }
    markdown = render(data)
    publish("kernels-int4", args.tag, data, markdown, Path(args.out) if args.out else None)
    return data


def render(data: dict) -> str:
    bw = data["bandwidth_gbs"]
    rows = []
    by_key: dict[tuple, dict] = {}
    for r in data["results"]:
        by_key[(r["shape"], r["m"], r["variant"])] = r
    for r in data["results"]:
        best4 = next(v for (s, m, v) in by_key if s == r["shape"] and m == r["m"] and v.startswith("int4"))
        base = by_key[(r["shape"], r["m"], best4)]["ms"]
        rows.append(
            [
                r["shape"],
                f"{r['n']}x{r['k']}",
                r["m"],
                r["variant"],
                f"{r['ms']:.3f}",
                f"{r['weight_gbs']:.1f}",
                f"{100 * r['weight_gbs'] / bw:.0f} %",
                f"{r['ms'] / base:.2f}x",
            ]
        )
    head = (
        "# int4 kernels: ours (Q4_0 x Q8_0) vs our int8 and torch's int4 op\n\n"
        f"Read bandwidth {bw:.1f} GB/s; load average before {data['loadavg']['before']}, "
        f"after {data['loadavg']['after']}; weights from DRAM (~1 GiB of copies).\n\n"
    )
    return head + md_table(
        ["shape", "N x K", "M", "variant", "ms", "weight GB/s", "of bandwidth", "vs int4 ours"], rows
    )
