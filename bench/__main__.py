"""python -m bench <command> [flags]; see bench/README.md. Every command writes JSON + Markdown under
bench/results/ (file name suffixed with the checkpoint name, or --tag) and prints the table."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from . import constrained, engine_benches, kernel_decode, kernels, platform_bench, seed_table

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split(";")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "seed-table", help="the article's table: baseline vs our engine per dtype (+ decode floor)"
    )
    seed_table.add_arguments(p)

    p = sub.add_parser("decode-floor", help="decode seconds/token per dtype vs weight bytes / bandwidth")
    seed_table.add_arguments(p, seed_table=False)

    for name, helptext in (
        ("prefix-reuse", "turns 2 and 3 about one image: TTFT with the prefix cache vs recomputing"),
        (
            "hol",
            "2 streams decoding while a full-size document arrives: longest token gap, interleave on/off",
        ),
        ("batching", "1/2/4/8 concurrent requests vs the same requests one at a time"),
    ):
        p = sub.add_parser(name, help=helptext)
        engine_benches.add_arguments(p, name)

    p = sub.add_parser("sampling", help="token choice cost; sampled decode beside greedy; batch 8 vs 1")
    from . import sampling_bench

    sampling_bench.add_arguments(p)

    p = sub.add_parser(
        "platform", help="concurrent requests through /v1/chat/completions + Celery + a worker"
    )
    platform_bench.add_arguments(p, "platform")
    p = sub.add_parser("web-streams", help="64 concurrent streaming clients on one web process")
    platform_bench.add_arguments(p, "web-streams")

    p = sub.add_parser("kernels", help="one int8 linear: engine kernels vs torch's op and dense GEMMs")
    kernels.add_arguments(p)
    from . import kernels_int4

    p = sub.add_parser(
        "kernels-int4", help="one int4 linear: our Q4_0 x Q8_0 kernel vs our int8 and torch's int4"
    )
    kernels_int4.add_arguments(p)
    p = sub.add_parser("kernel-decode", help="whole-model int8 decode at batch 1 and 8 per kernel path")
    kernel_decode.add_arguments(p)
    p = sub.add_parser(
        "constrained", help="grammar mask cost per token at batch 8; mixed constrained/free batch throughput"
    )
    constrained.add_arguments(p)
    p = sub.add_parser(
        "invoice-accuracy", help="the layout extractor on generated invoices: key-field accuracy per layout"
    )
    from . import invoice_accuracy

    invoice_accuracy.add_arguments(p)
    p = sub.add_parser(
        "textlayer", help="born-digital PDF pages: read from their text layer vs OCR'd (speed, agreement)"
    )
    from . import textlayer

    textlayer.add_arguments(p)
    p = sub.add_parser(
        "ocr", help="our OCR beside Tesseract on the same pages: s/page, pages/min, CER per group"
    )
    from . import ocr_bench

    ocr_bench.add_arguments(p)

    p = sub.add_parser("render", help="rewrite a seed-table/decode-floor Markdown (and chart) from its JSON")
    p.add_argument("json", type=Path)

    p = sub.add_parser("all", help="every command above with its defaults (long: see bench/README.md)")
    p.add_argument("--checkpoint", default="2b")
    p.add_argument("--quick", action="store_true", help="1 row per bench, few tokens: a smoke run")
    p.add_argument("--out", help="results folder for every command (default bench/results)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command in ("seed-table", "decode-floor"):
        from . import seed_table

        seed_table.run(args, rows=[] if args.command == "decode-floor" else None)
    elif args.command in ("prefix-reuse", "hol", "batching"):
        from . import engine_benches

        engine_benches.run(args)
    elif args.command in ("platform", "web-streams"):
        from . import platform_bench

        return platform_bench.run(args)
    elif args.command == "kernels":
        from . import kernels

        kernels.run(args)
    elif args.command == "kernels-int4":
        from . import kernels_int4

        kernels_int4.run(args)
    elif args.command == "kernel-decode":
        from . import kernel_decode

        kernel_decode.run(args)
    elif args.command == "constrained":
        from . import constrained

        constrained.run(args)
    elif args.command == "sampling":
        from . import sampling_bench

        sampling_bench.run(args)
    elif args.command == "invoice-accuracy":
        from . import invoice_accuracy

        return invoice_accuracy.run(args)
    elif args.command == "textlayer":
        from . import textlayer

        return textlayer.run(args)
    elif args.command == "ocr":
        from . import ocr_bench

        return ocr_bench.run(args)
    elif args.command == "render":
        from . import seed_report

        seed_report.rerender(args.json)
    elif args.command == "all":
        return run_all(args)
    return 0


def run_all(args: argparse.Namespace) -> int:
    """Each bench in turn, in this process, one model in memory at a time."""
    ckpt = ["--checkpoint", args.checkpoint]
    tag = args.checkpoint.rstrip("/").split("/")[-1]
    if args.quick:
        commands = [
            ["seed-table", *ckpt, "--rows", "sketch", "--tokens", "4", "--dtypes", "fp32,auto"],
            ["prefix-reuse", *ckpt, "--tokens", "4"],
            ["hol", *ckpt, "--stream-tokens", "12", "--doc-pixels", "task"],
            ["batching", *ckpt, "--tokens", "4", "--concurrency", "1,2"],
            ["platform", "--checkpoint", "tiny", "--concurrency", "1,2"],
            ["web-streams", "--clients", "8"],
        ]
    else:
        commands = [
            # Every row, the baseline vs our defaults (auto) at both pixel settings.
            ["seed-table", *ckpt, "--dtypes", "auto"],
            ["prefix-reuse", *ckpt],
            ["hol", *ckpt, "--stream-tokens", "48"],
            ["batching", *ckpt, "--tokens", "16"],
            ["batching", *ckpt, "--tokens", "32", "--image-size", "none", "--tag", f"{tag}-text"],
            ["batching", "--checkpoint", "tiny", "--tokens", "16"],
            ["platform", "--checkpoint", "tiny", "--tokens", "16"],
            ["web-streams"],
            ["platform", *ckpt, "--tokens", "16"],
            # Every dtype on the sketch row (5 rows x 4 dtypes takes hours on 2 cores).
            ["seed-table", *ckpt, "--rows", "sketch", "--dtypes", "fp32,bf16,int8", "--tag", f"{tag}-dtypes"],
        ]
    if args.out:
        commands = [[*command, "--out", args.out] for command in commands]
    status = 0
    for command in commands:
        print(f"\n[bench] === python -m bench {' '.join(command)}", flush=True)
        status = max(status, main(command))
    return status


if __name__ == "__main__":
    sys.exit(main())
