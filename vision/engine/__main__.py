"""Ask the model about images from a shell, streaming the answer:

    python -m vision.engine MODEL --image page.png "What is the invoice total?"
    python -m vision.engine data/checkpoints/tiny --image a.png --max-tokens 32 --dtype bf16 "Describe it"

MODEL is a hub id (e.g. Qwen/Qwen3-VL-2B-Instruct) or a local folder. Re-measure the weight formats
`auto` picks on this machine (ignoring the cached verdict) and store the new verdict:

    python -m vision.engine tune MODEL [--threads N] [--cache PATH]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from .config import EngineConfig
from .contract import PixelBudget, SamplingParams
from .errors import EngineError
from .types import ChatMessage, EngineRequest, ImagePart, TextPart


def tune(argv: list[str]) -> int:
    """Load MODEL (a missing or broken folder fails here, before any timing), time every format on
    its own weights, print the verdict with its evidence, cache it if the machine was calm."""
    parser = argparse.ArgumentParser(prog="python -m vision.engine tune", description=tune.__doc__)
    parser.add_argument("model", help="hub id or local folder")
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--cache", type=Path, help="format cache file (default ~/.cache/docplatform/formats.json)"
    )
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per measurement (default 2)")
    args = parser.parse_args(argv)

    import json
    from dataclasses import asdict

    from .autotune import choose_formats
    from .fusion import fuse_projections
    from .pretrained import load_model
    from .startup import configure_threads

    threads = configure_threads(args.threads)
    try:
        loaded = load_model(args.model, progress=sys.stderr.isatty())
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    fuse_projections(loaded.model)
    choice = choose_formats(cache_path=args.cache, budget_s=args.budget, model=loaded.model, force=True)
    print(f"[{threads} threads] {choice.summary()}", file=sys.stderr)
    print(json.dumps(asdict(choice.verdict()), indent=1))
    if not choice.calm:
        print("warning: the machine stayed busy; the verdict was not cached", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tune"]:
        return tune(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m vision.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="hub id or local folder")
    parser.add_argument("question")
    parser.add_argument("--image", action="append", default=[], type=Path, help="an image file (repeatable)")
    parser.add_argument(
        "--task", default="chat", help="sets the default pixel budget (chat, ocr, invoice, ...)"
    )
    parser.add_argument("--max-pixels", type=int, help="override the task's pixel budget")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument(
        "--temperature", type=float, help="0 for greedy (default: the checkpoint's generation_config.json)"
    )
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--stats", action="store_true", help="print usage and timings after the answer")
    args = parser.parse_args(argv)

    from .engine import Engine

    parts: list[ImagePart | TextPart] = []
    for path in args.image:
        try:
            parts.append(ImagePart.from_bytes(path.read_bytes()))
        except OSError as exc:
            parser.error(f"cannot read {path}: {exc}")
    parts.append(TextPart(args.question))
    budget = PixelBudget.for_task(args.task)
    if args.max_pixels:
        budget = PixelBudget(min(budget.min_pixels, args.max_pixels), args.max_pixels)
    engine = Engine(EngineConfig(model=args.model, dtype=args.dtype, threads=args.threads))
    try:
        status = engine.load().status()
        print(f"[{status.model}: formats {status.formats}, {status.threads} threads]", file=sys.stderr)
        request = EngineRequest(
            request_id=uuid.uuid4().hex,
            messages=[ChatMessage("user", tuple(parts))],
            sampling=SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature),
            task=args.task,
            pixels=budget,
        )
        final = None
        for delta in engine.submit(request):
            print(delta.text, end="", flush=True)
            final = delta
        print()
        if final is not None and final.error:
            print(f"error: {final.error}", file=sys.stderr)
            return 1
        if args.stats and final is not None:
            print(f"[{final.finish_reason}] usage={final.usage} timings={final.timings}", file=sys.stderr)
        return 0
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.shutdown()


if __name__ == "__main__":
    sys.exit(main())
