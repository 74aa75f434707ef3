"""Ask the model about images from a shell, streaming the answer:

    python -m vision.engine MODEL --image page.png "What is the invoice total?"
    python -m vision.engine data/checkpoints/tiny --image a.png --max-tokens 32 --dtype bf16 "Describe it"

MODEL is a hub id (e.g. Qwen/Qwen3-VL-2B-Instruct) or a local folder.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from .config import EngineConfig
from .errors import EngineError
from .types import ChatMessage, EngineRequest, ImagePart, PixelBudget, SamplingParams, TextPart


def main(argv: list[str] | None = None) -> int:
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
