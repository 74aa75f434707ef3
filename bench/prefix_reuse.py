"""`python -m bench prefix-reuse`: turns 2 and 3 about one image, TTFT with the prefix cache vs
recomputing the whole conversation."""

from __future__ import annotations

import argparse
from pathlib import Path

from vision.engine import ChatMessage, Engine, ImagePart, PixelBudget, TextPart

from .common import TARGETS, md_table, verdict
from .images import ROWS_BY_KEY, render
from .runs import engine_config, image_request, stream, warm_up_engine

QUESTIONS = (
    "What is this document about?",
    "What is the total amount in the table?",
    "Which line items have a quantity above ten?",
)


def prefix_reuse(args: argparse.Namespace, path: Path, loaded) -> dict:
    row = ROWS_BY_KEY[args.image]
    image = ImagePart.from_image(render(row.key))
    budget = PixelBudget.for_task(row.task)
    cached = Engine(engine_config(path, args), loaded=loaded).load()  # production caches on
    recompute = Engine(engine_config(path, args, kv_cache_mb=0, vision_cache_mb=0), loaded=loaded).load()
    warm_up_engine(cached)
    turns: list[dict] = []
    for rep in range(args.repeats):
        history: list[ChatMessage] = []
        # A fresh picture per repeat (different digest): repeats must not reuse each other's cache.
        picture = image if rep == 0 else ImagePart.from_image(render(row.key, variant=rep))
        for turn, question in enumerate(QUESTIONS, start=1):
            pic = picture if turn == 1 else None
            asked = history  # the conversation before this turn's question

            def request(use_cache: bool, pic=pic, question=question, asked=asked):
                return image_request(
                    pic,
                    question,
                    args.tokens,
                    task=row.task,
                    pixels=budget,
                    history=asked,
                    use_prefix_cache=use_cache,
                )

            entry: dict = {"repeat": rep, "turn": turn}
            if turn > 1:
                # Recompute first: it neither reads nor writes the cache, so order does not matter to it.
                full = stream(recompute, request(False))
                entry["recompute_ttft_s"] = round(full.ttft_s, 3)
                entry["recompute_vision_s"] = round(full.output.timings.vision_s, 3)
                entry["recompute_prefill_s"] = round(full.output.timings.prefill_s, 3)
            hit = stream(cached, request(True))
            usage = hit.output.usage
            entry |= {
                "prompt_tokens": usage.prompt_tokens,
                "image_tokens": usage.image_tokens,
                "cached_tokens": usage.cached_tokens,
                "cached_ttft_s": round(hit.ttft_s, 3),
                "cached_prefill_s": round(hit.output.timings.prefill_s, 3),
            }
            if turn > 1:
                entry["ttft_ratio"] = round(entry["recompute_ttft_s"] / hit.ttft_s, 2) if hit.ttft_s else None
            turns.append(entry)
            print(f"[bench]   prefix-reuse {entry}")
            history = [*request(True).messages, ChatMessage("assistant", (TextPart(hit.output.text),))]
    cached.shutdown()
    recompute.shutdown()
    ratios = [t["ttft_ratio"] for t in turns if t.get("ttft_ratio")]
    worst = min(ratios) if ratios else None
    body = [
        [
            t["repeat"],
            t["turn"],
            t["prompt_tokens"],
            t["image_tokens"],
            t["cached_tokens"],
            t.get("recompute_ttft_s"),
            t["cached_ttft_s"],
            t.get("ttft_ratio") and f"**{t['ttft_ratio']}×**",
        ]
        for t in turns
    ]
    markdown = "\n".join(
        [
            f"Image: {row.label} {row.width}×{row.height} at our `{row.task}` budget; {args.tokens} answer tokens "
            "per turn. *Recompute* = same conversation on an engine with the prefix and vision caches off "
            "(what a server without reuse does every turn); *cached* = production engine, whose prefix "
            "cache holds the previous turn (prompt + answer).",
            "",
            md_table(
                [
                    "repeat",
                    "turn",
                    "prompt tok",
                    "image tok",
                    "cached tok",
                    "recompute TTFT s",
                    "cached TTFT s",
                    "ratio",
                ],
                body,
            ),
            "",
            f"Target: reused-prefix TTFT ≥ {TARGETS['prefix_ttft_ratio']}× lower → worst turn {worst}× → "
            f"{verdict(worst, TARGETS['prefix_ttft_ratio'])}.",
        ]
    )
    return {
        "image": row.key,
        "tokens": args.tokens,
        "turns": turns,
        "worst_ttft_ratio": worst,
        "markdown": markdown,
    }
