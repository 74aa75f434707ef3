"""The tokenizer files of the random-weight checkpoint: a Qwen2-style byte-level BPE and the chat template.

The tokenizer is trained at write time on `vision.engine.testing.corpus` (English, Simplified
Chinese, numbers, JSON) with Qwen2Tokenizer's normalizer, pre-tokenizer and decoder and Qwen's
added tokens, so it behaves like the real one; its ids differ from the real Qwen tokenizer's.
The chat template is the released model's (`chat_template.jinja` beside this module, verbatim).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE

from vision.engine.testing.corpus import corpus

# Qwen2's pre-tokenizer split (tokenizer.json of every Qwen2/2.5/3 model): single digits,
# letters runs with one leading non-letter, punctuation runs, newlines, whitespace.
QWEN2_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# Qwen's added tokens in Qwen's order (real ids 151643..151668). `special` mirrors the real
# tokenizer_config.json: tool/fim/think markers are added but not "special", so
# skip_special_tokens keeps them.
QWEN_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
QWEN_SPECIALS = tuple(text for text, special in QWEN_ADDED_TOKENS if special)

# Qwen3-VL Instruct's ChatML template (chat_template.json of the released model, kept as its own
# file, verbatim): a system turn first, then user/assistant/tool turns; each image part becomes
# <|vision_start|><|image_pad|><|vision_end|> and the processor expands the single
# <|image_pad|> to one pad per merged 2x2 patch group. Content may be a string or a list of
# parts ({"type": "text"|"image"|"video", ...}).
CHAT_TEMPLATE = (Path(__file__).parent / "chat_template.jinja").read_text(encoding="utf-8")


@dataclass(frozen=True)
class TokenIds:
    """Ids the config must agree with, read from the trained tokenizer."""

    endoftext: int  # bos / pad, like Qwen's <|endoftext|>
    im_end: int  # eos of a chat turn
    vision_start: int
    vision_end: int
    image_pad: int
    video_pad: int
    size: int  # number of tokens including the added ones


def _pipeline(model: BPE) -> Tokenizer:
    """A tokenizer with Qwen2Tokenizer's normalizer, pre-tokenizer and decoder around `model`."""
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tokenizer


def train_tokenizer(regular_tokens: int | None = None) -> Tokenizer:
    """Train the Qwen2-style byte-level BPE on the built-in corpus and add Qwen's special tokens.

    Same normalizer, pre-tokenizer and decoder as `Qwen2Tokenizer` builds, so the loaded
    tokenizer behaves like the real one; the 256 byte symbols are always in the vocabulary,
    so any UTF-8 text round-trips. Training is deterministic and takes ~20 ms.

    `regular_tokens` pads the vocabulary with filler words (" w1000", " w1001", ...) that no
    merge produces, up to that many tokens before the added ones. With Qwen's 151643 the
    special tokens get the released ids (<|im_end|> = 151645, <|image_pad|> = 151655) and
    every id a full-size random lm_head can emit decodes to text.
    """
    tokenizer = _pipeline(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    trainer = trainers.BpeTrainer(
        vocab_size=8192,  # an upper bound; the small corpus stops far below it
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    if regular_tokens is not None:
        trained = json.loads(tokenizer.to_str())["model"]
        vocab: dict[str, int] = trained["vocab"]
        if regular_tokens < len(vocab):
            raise ValueError(f"regular_tokens {regular_tokens} < trained vocabulary {len(vocab)}")
        # "\u0120" is the byte-level symbol of a space, as in every Qwen word token.
        vocab.update({f"\u0120w{i}": i for i in range(len(vocab), regular_tokens)})
        merges = [
            tuple(pair) if isinstance(pair, list) else tuple(pair.split(" ")) for pair in trained["merges"]
        ]
        tokenizer = _pipeline(
            BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False)
        )
    tokenizer.add_special_tokens(
        [
            AddedToken(text, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
            for text, special in QWEN_ADDED_TOKENS
        ]
    )
    return tokenizer


def token_ids(tokenizer: Tokenizer) -> TokenIds:
    def tid(text: str) -> int:
        value = tokenizer.token_to_id(text)
        if value is None:
            raise RuntimeError(f"tokenizer lacks {text}")
        return value

    return TokenIds(
        endoftext=tid("<|endoftext|>"),
        im_end=tid("<|im_end|>"),
        vision_start=tid("<|vision_start|>"),
        vision_end=tid("<|vision_end|>"),
        image_pad=tid("<|image_pad|>"),
        video_pad=tid("<|video_pad|>"),
        size=tokenizer.get_vocab_size(with_added_tokens=True),
    )


def _tokenizer_config(tokenizer: Tokenizer) -> dict[str, Any]:
    added = {
        str(tokenizer.token_to_id(text)): {
            "content": text,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for text, special in QWEN_ADDED_TOKENS
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": list(QWEN_SPECIALS[1:]),  # all but <|endoftext|>
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 262144,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def write_tokenizer(out: Path, tokenizer: Tokenizer) -> None:
    """tokenizer.json, the slow-tokenizer files and tokenizer_config.json (which carries the chat
    template too), as the hub repository has them."""
    out.joinpath("tokenizer.json").write_text(tokenizer.to_str(pretty=True), encoding="utf-8")
    # vocab.json + merges.txt as the hub repo has them (slow-tokenizer files).
    model = json.loads(tokenizer.to_str())["model"]
    write_json(out / "vocab.json", model["vocab"])
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    out.joinpath("merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    write_json(out / "tokenizer_config.json", _tokenizer_config(tokenizer))
