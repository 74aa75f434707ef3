"""Constrained decoding: grammar mask cost per token per sequence, and what it does to throughput.

1. **Mask cost** on a full-size vocabulary at batch 8: 8 grammar states per schema, each step
   every state computes its mask and applies it to a random logits row (a random-weight model picks
   arbitrary tokens, which is the hard case: strings full of rare characters), then the argmax is
   fed back. Timed through the engine's own `GrammarState.mask_` (compute + apply). Vocabularies:
   the real Qwen2/Qwen3 vocabulary (151,643 byte-level BPE tokens, from `--qwen-vocab`, see
   bench/README.md) and the 2B checkpoint's tokenizer (same size, filler tokens); both padded to
   the 151,936 logits of Qwen3-VL-2B.
2. **Library comparison** (`--compare-xgrammar`, when xgrammar is importable): compile time and
   mask time of the same schemas with xgrammar 0.2.8, the other grammar library vLLM offers.
3. **Throughput**: 8 concurrent text requests on a checkpoint, all free vs 4 constrained + 4 free
   vs 8 constrained, interleaved repeats. Lengths are forced so every request runs exactly
   `--tokens` tokens (free: `ignore_eos`; constrained: an array schema with more items than fit),
   so the ratio is the masking overhead and nothing else.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from .common import (
    RunInfo,
    checkpoint_tag,
    machine_description,
    machine_markdown,
    md_table,
    publish,
    resolve_checkpoint,
    run_markdown,
)
from .grammar_mask import DEFAULT_QWEN_VOCAB, LOGITS, mask_cost, vocabularies, xgrammar_cost

# The schemas timed: the invoice cross-check's, and the engine tests' mix of features.
FORCED_LONG = {"type": "array", "items": {"type": "string", "maxLength": 6}, "minItems": 500}


ADDRESS = {
    "type": "object",
    "properties": {
        "street": {"type": "string", "maxLength": 40},
        "city": {"type": "string", "maxLength": 30},
        "postcode": {"type": "string", "pattern": "^[0-9]{5}$"},
        "country": {"enum": ["DE", "FR", "CN", "US", "GB"]},
    },
    "required": ["street", "city", "postcode", "country"],
    "additionalProperties": False,
}
DELIVERY_NOTE = {
    "type": "object",
    "properties": {
        "note_number": {"type": "string", "pattern": "^DN-[0-9]{4,8}$"},
        "date": {"type": "string", "pattern": "^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"},
        "ship_to": ADDRESS,
        "lines": {
            "type": "array",
            "minItems": 1,
            "maxItems": 30,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "maxLength": 16},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 9999},
                    "weight_kg": {"type": "number", "minimum": 0, "maximum": 1000},
                },
                "required": ["sku", "quantity"],
                "additionalProperties": False,
            },
        },
        "signed": {"type": "boolean"},
    },
    "required": ["note_number", "date", "ship_to", "lines", "signed"],
    "additionalProperties": False,
}
CLASSIFY = {
    "type": "object",
    "properties": {"kind": {"enum": ["invoice", "receipt", "order", "other"]}},
    "required": ["kind"],
    "additionalProperties": False,
}


def schemas() -> dict[str, dict]:
    from vision.ocr.vlm import INVOICE_SCHEMA

    return {"invoice": INVOICE_SCHEMA, "delivery_note": DELIVERY_NOTE, "classify": CLASSIFY}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", default="tiny", help="checkpoint for the throughput part (tiny, 2b, folder)"
    )
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--qwen-vocab", type=Path, default=DEFAULT_QWEN_VOCAB, help="qwen.tiktoken file")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=64, help="tokens per sequence in the mask timing")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per request in the throughput part")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-xgrammar", action="store_true")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--tag", help="results file suffix (default: checkpoint name)")
    parser.add_argument("--out", type=Path)


# -- throughput ----------------------------------------------------------------------------------
def throughput(args: argparse.Namespace) -> dict:
    from vision.engine import ChatMessage, Engine, EngineConfig, EngineRequest, SamplingParams, TextPart
    from vision.engine.constraints import json_schema_constraint
    from vision.engine.grammar import GrammarState
    from vision.engine.startup import load_for_engine

    path = resolve_checkpoint(args.checkpoint)
    config = EngineConfig(model=str(path), dtype=args.dtype, threads=args.threads)
    loaded, formats, _ = load_for_engine(config)
    engine = Engine(config, loaded=loaded).load()
    forced = json_schema_constraint(FORCED_LONG)
    counter = iter(range(10**9))

    def request(constrained: bool) -> EngineRequest:
        n = next(counter)
        return EngineRequest(
            request_id=f"bench-{n}",
            messages=[ChatMessage("user", (TextPart(f"List {n} short words as a JSON array."),))],
            sampling=SamplingParams(
                max_tokens=args.tokens, ignore_eos=not constrained, temperature=1.0, seed=n
            ),
            use_prefix_cache=False,
            constraint=forced if constrained else None,
        )

    # Wall time the engine thread spends in the grammar (mask + advance), summed per batch: on a
    # shared machine the tokens/s of repeats differ by more than the grammar costs, so its share of
    # the batch's wall time is the steadier measure of the overhead.
    spent = [0.0]
    original_mask, original_advance = GrammarState.mask_, GrammarState.advance

    def timed_mask(self, logits):
        t = time.perf_counter()
        original_mask(self, logits)
        spent[0] += time.perf_counter() - t

    def timed_advance(self, token):
        t = time.perf_counter()
        ok = original_advance(self, token)
        spent[0] += time.perf_counter() - t
        return ok

    GrammarState.mask_, GrammarState.advance = timed_mask, timed_advance
    shares: dict[str, list[float]] = {}

    def batch(constrained: int) -> float:
        handles = [engine.submit(request(i < constrained)) for i in range(args.batch)]
        spent[0] = 0.0
        t0 = time.perf_counter()
        outputs = [h.result(timeout=3600) for h in handles]
        elapsed = time.perf_counter() - t0
        tokens = sum(len(o.token_ids) for o in outputs)
        assert tokens == args.batch * args.tokens, [o.finish_reason for o in outputs]
        shares.setdefault(constrained, []).append(spent[0] / elapsed)
        return tokens / elapsed

    batch(args.batch // 2)  # warm-up: compiles the grammar, builds the trie, first kernels
    mixes = {"all free": 0, "half constrained": args.batch // 2, "all constrained": args.batch}
    rates: dict[str, list[float]] = {k: [] for k in mixes}
    for _ in range(args.repeats):
        for name, constrained in mixes.items():
            rates[name].append(batch(constrained))
    engine.shutdown()
    GrammarState.mask_, GrammarState.advance = original_mask, original_advance
    median = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "grammar_share_of_wall": {
            name: round(statistics.median(shares[n]), 4) for name, n in mixes.items() if n
        },
        "checkpoint": str(path),
        "formats": formats,
        "tokens_per_s": {k: [round(x, 2) for x in v] for k, v in rates.items()},
        "median_tokens_per_s": {k: round(v, 2) for k, v in median.items()},
        "ratio_vs_free": {k: round(v / median["all free"], 3) for k, v in median.items()},
    }


# -- run -----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict:
    from vision.engine.startup import configure_threads

    tag = checkpoint_tag(args)
    run_info = RunInfo.start(args.argv)
    configure_threads(args.threads)
    vocabs = vocabularies(args)
    rows, xgr_rows = [], []
    for vocab_name, lltokenizer in vocabs.items():
        for schema_name, schema in schemas().items():
            cost = mask_cost(lltokenizer, schema, args.batch, args.steps)
            rows.append({"vocabulary": vocab_name, "schema": schema_name, **cost})
            print(f"[bench] llguidance {vocab_name} {schema_name}: {cost}", flush=True)
    if args.compare_xgrammar and "qwen" in vocabs:
        for schema_name, schema in schemas().items():
            cost = xgrammar_cost(args, schema, args.batch, args.steps)
            if cost is None:
                print("[bench] xgrammar is not importable: comparison skipped")
                break
            xgr_rows.append({"schema": schema_name, **cost})
            print(f"[bench] xgrammar qwen {schema_name}: {cost}", flush=True)
    result = {"mask": rows, "xgrammar": xgr_rows}
    if not args.no_throughput:
        result["throughput"] = throughput(args)
        print(f"[bench] throughput: {result['throughput']}", flush=True)
    run_info.finish()
    run_info.machine = machine_description()
    data = {"kind": "constrained", "run": run_info.to_dict(), "batch": args.batch, **result}
    markdown = render(data, args)
    publish("constrained", tag, data, markdown, args.out)
    return data


def render(data: dict, args: argparse.Namespace) -> str:
    run_info = data["run"]
    lines = [
        "# Constrained decoding: mask cost and throughput",
        "",
        machine_markdown(run_info["machine"]),
        "",
        run_markdown(RunInfo.from_dict(run_info)),
        "",
        f"## Mask cost per token per sequence (llguidance, batch {data['batch']}, {args.steps} steps, "
        f"{LOGITS:,} logits)",
        "",
        "Microseconds of CPU time (`time.thread_time`: the cost itself, not the waits of a shared machine) "
        "to compute the mask and apply it to the logits row (`GrammarState.mask_`), per sequence per token, "
        "after one warm-up sequence on the freshly compiled grammar (*first seq mean*: llguidance builds "
        "lexer states lazily and shares them between the sequences of one schema). *wall median* is the "
        "same in wall-clock time; *apply* is the share of applying the mask; *argmax* is what picking a "
        "token from the row costs anyway. Target: ≤ 1,000 µs.",
        "",
        md_table(
            [
                "vocabulary",
                "schema",
                "compile ms",
                "first seq mean",
                "median",
                "mean",
                "p95",
                "max",
                "wall median",
                "apply median",
                "argmax (scale)",
            ],
            [
                [
                    r["vocabulary"],
                    r["schema"],
                    r["compile_ms"],
                    r["first_sequence_cpu_mean_us"],
                    r["cpu_median_us"],
                    r["cpu_mean_us"],
                    r["cpu_p95_us"],
                    r["cpu_max_us"],
                    r["wall_median_us"],
                    r["apply_cpu_median_us"],
                    r["argmax_cpu_us"],
                ]
                for r in data["mask"]
            ],
        ),
    ]
    if data.get("xgrammar"):
        lines += [
            "",
            "## xgrammar 0.2.8 on the same schemas (real Qwen vocabulary)",
            "",
            md_table(
                ["schema", "compile ms", "median µs", "mean µs", "max µs"],
                [
                    [r["schema"], r["compile_ms"], r["cpu_median_us"], r["cpu_mean_us"], r["cpu_max_us"]]
                    for r in data["xgrammar"]
                ],
            ),
        ]
    if "throughput" in data:
        t = data["throughput"]
        lines += [
            "",
            f"## Throughput, {data['batch']} concurrent requests × {args.tokens} tokens "
            f"({Path(t['checkpoint']).name}, {t['formats']}, {args.repeats} interleaved repeats)",
            "",
            "*grammar share*: wall time the engine thread spent in the grammar (mask + advance) over the "
            "batch's wall time, the overhead measured directly (steadier than tokens/s across repeats on "
            "a shared machine).",
            "",
            md_table(
                ["batch", "tokens/s (each repeat)", "median tokens/s", "vs all free", "grammar share"],
                [
                    [
                        k,
                        ", ".join(str(x) for x in t["tokens_per_s"][k]),
                        t["median_tokens_per_s"][k],
                        t["ratio_vs_free"][k],
                        _percent(t["grammar_share_of_wall"].get(k)),
                    ]
                    for k in t["tokens_per_s"]
                ],
            ),
        ]
    return "\n".join(lines)


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.2f} %"
