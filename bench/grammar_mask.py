"""The grammar mask's cost per token per sequence at batch 8 on a full-size vocabulary (the real Qwen
vocabulary and the 2B checkpoint's tokenizer), and the same for xgrammar: parts 1 and 2 of
`python -m bench constrained` (see `constrained.py`)."""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from pathlib import Path

from vision.engine.testing.tokenizer import QWEN_SPECIALS

LOGITS = 151_936  # Qwen3-VL-2B's lm_head rows
QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
DEFAULT_QWEN_VOCAB = Path(__file__).resolve().parent.parent / "data" / "qwen.tiktoken"


# -- vocabularies --------------------------------------------------------------------------------
def qwen_ranks(path: Path) -> tuple[dict[bytes, int], dict[str, int]]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    specials = {name: len(ranks) + i for i, name in enumerate(QWEN_SPECIALS)}
    return ranks, specials


def vocabularies(args: argparse.Namespace) -> dict[str, object]:
    """name -> llguidance.LLTokenizer with n_vocab = the 2B logits width."""
    import llguidance

    from vision.engine.testing.checkpoint import REGULAR_TOKENS, token_ids, train_tokenizer

    out = {}
    if args.qwen_vocab.is_file():
        ranks, specials = qwen_ranks(args.qwen_vocab)
        t0 = time.perf_counter()
        out["qwen"] = llguidance.LLTokenizer.from_tiktoken(  # type: ignore[attr-defined]
            encoder=ranks,
            special_tokens=specials,
            pattern=QWEN_PATTERN,
            eos_token=specials["<|im_end|>"],
            n_vocab=LOGITS,
        )
        print(f"[bench] qwen vocabulary: {len(ranks)} tokens, trie built in {time.perf_counter() - t0:.2f} s")
    else:
        print(f"[bench] {args.qwen_vocab} missing: real Qwen vocabulary skipped (see bench/README.md)")
    tokenizer = train_tokenizer(REGULAR_TOKENS["2b"])
    out["2b-checkpoint"] = llguidance.LLTokenizer(
        tokenizer.to_str(), n_vocab=LOGITS, eos_token=token_ids(tokenizer).im_end
    )
    return out


# -- mask cost -----------------------------------------------------------------------------------
def mask_cost(lltokenizer, schema: dict, batch: int, steps: int, seed: int = 0) -> dict:
    """Compile (timed), warm one sequence, then `batch` sequences step by step."""
    import llguidance
    import torch

    from vision.engine.constraints import json_schema_constraint
    from vision.engine.grammar import GrammarState, apply_bitmask_

    constraint = json_schema_constraint(schema)
    t0 = time.perf_counter()
    template = llguidance.LLMatcher(lltokenizer, constraint.grammar(), log_level=0)
    compile_s = time.perf_counter() - t0
    generator = torch.Generator().manual_seed(seed)

    def walk(states: list[GrammarState]) -> dict[str, list[float]]:
        """Per step, per sequence: CPU and wall time of mask_ (compute + apply), and of apply alone."""
        times: dict[str, list[float]] = {"cpu": [], "wall": [], "apply_cpu": []}
        tokens = 0
        live = list(states)
        for _ in range(steps):
            if not live:
                break
            logits = torch.randn(len(live), LOGITS, generator=generator)
            spare = logits.clone()
            wall, cpu = time.perf_counter(), time.thread_time()
            for row, state in enumerate(live):
                state.mask_(logits[row])
            times["cpu"].append((time.thread_time() - cpu) / len(live))
            times["wall"].append((time.perf_counter() - wall) / len(live))
            cpu = time.thread_time()
            for row, state in enumerate(live):
                apply_bitmask_(spare[row], state._bitmask)  # the same masks again: apply's share
            times["apply_cpu"].append((time.thread_time() - cpu) / len(live))
            for row, state in enumerate(live):
                assert state.advance(int(torch.argmax(logits[row])))
                tokens += 1
            live = [s for s in live if not s.stopped]
        times["tokens"] = [tokens]
        return times

    cold = walk([GrammarState(template.deep_copy(), LOGITS)])
    warm = walk([GrammarState(template.deep_copy(), LOGITS) for _ in range(batch)])
    us = lambda values: round(values * 1e6, 1)  # noqa: E731
    cpu = sorted(warm["cpu"])
    return {
        "compile_ms": round(compile_s * 1e3, 2),
        "first_sequence_cpu_mean_us": us(statistics.mean(cold["cpu"])),
        "cpu_median_us": us(statistics.median(cpu)),
        "cpu_mean_us": us(statistics.mean(cpu)),
        "cpu_p95_us": us(cpu[int(0.95 * (len(cpu) - 1))]),
        "cpu_max_us": us(cpu[-1]),
        "wall_median_us": us(statistics.median(warm["wall"])),
        "apply_cpu_median_us": us(statistics.median(warm["apply_cpu"])),
        "argmax_cpu_us": us(_argmax_cost()),
        "tokens": warm["tokens"][0],
    }


def _argmax_cost() -> float:
    """What choosing a token from a 151,936-wide row costs anyway: the scale to judge the mask by."""
    import torch

    logits = torch.randn(LOGITS)
    cpu = time.thread_time()
    for _ in range(50):
        int(torch.argmax(logits))
    return (time.thread_time() - cpu) / 50


def xgrammar_cost(args: argparse.Namespace, schema: dict, batch: int, steps: int) -> dict | None:
    try:
        import xgrammar
    except ImportError:
        return None
    import torch

    from vision.engine.grammar import apply_bitmask_

    ranks, specials = qwen_ranks(args.qwen_vocab)
    encoded = [b""] * LOGITS
    for token, rank in ranks.items():
        encoded[rank] = token
    for name, rank in specials.items():
        encoded[rank] = name.encode()
    info = xgrammar.TokenizerInfo(
        encoded, xgrammar.VocabType.RAW, vocab_size=LOGITS, stop_token_ids=[specials["<|im_end|>"]]
    )
    compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    t0 = time.perf_counter()
    compiled = compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(", ", ": "))
    compile_s = time.perf_counter() - t0
    generator = torch.Generator().manual_seed(0)
    bitmask = xgrammar.allocate_token_bitmask(1, LOGITS)
    times = []
    for sequence in range(batch + 1):
        matcher = xgrammar.GrammarMatcher(compiled)
        for _ in range(steps):
            logits = torch.randn(LOGITS, generator=generator)
            cpu = time.thread_time()
            matcher.fill_next_token_bitmask(bitmask, 0)
            apply_bitmask_(logits, bitmask[0])
            if sequence:  # the first sequence warms up, like llguidance's
                times.append(time.thread_time() - cpu)
            if not matcher.accept_token(int(torch.argmax(logits))) or matcher.is_terminated():
                break
    return {
        "compile_ms": round(compile_s * 1e3, 2),
        "cpu_median_us": round(statistics.median(times) * 1e6, 1),
        "cpu_mean_us": round(statistics.mean(times) * 1e6, 1),
        "cpu_max_us": round(max(times) * 1e6, 1),
    }
