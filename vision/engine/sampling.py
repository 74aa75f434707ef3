"""Choosing the next token, and turning tokens into a text stream.

Streaming text is not per-token decoding: a Chinese character is often two or three byte-level BPE
tokens, and decoding them one at a time yields U+FFFD halves. `TextStream` decodes the whole output
so far and releases only text that is complete (no trailing U+FFFD) and cannot be the beginning of a
stop string, so what a client concatenates is exactly the final text.
"""

from __future__ import annotations

import torch

from .types import SamplingParams


class Sampler:
    """Per-request token choice: greedy, or temperature + top-p with the request's own generator."""

    def __init__(self, params: SamplingParams, eos_ids: frozenset[int]):
        self.params = params
        self.eos_ids = sorted(eos_ids)
        self.generator: torch.Generator | None = None
        if not params.greedy:
            self.generator = torch.Generator()
            if params.seed is not None:
                self.generator.manual_seed(params.seed)
            else:
                self.generator.seed()

    def choose(self, logits: torch.Tensor, produced: int) -> int:
        """`logits`: (vocab,) float32 for this request; `produced`: tokens generated so far."""
        p = self.params
        if self.eos_ids and (p.ignore_eos or produced < p.min_tokens):
            logits = logits.clone()
            logits[self.eos_ids] = float("-inf")
        if p.greedy:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < p.top_p  # always keeps the top one
            sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
            pick = torch.multinomial(sorted_probs, 1, generator=self.generator)
            return int(order[pick])
        return int(torch.multinomial(probs, 1, generator=self.generator))


class TextStream:
    """Incremental detokenizer with stop strings."""

    def __init__(self, tokenizer, stop: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.token_ids: list[int] = []
        self.text = ""  # decoded text so far (may end mid-character or mid-stop-string)
        self.emitted = 0  # characters of `text` already handed out
        self.stopped = False  # a stop string was found; `text` is cut before it

    def push(self, token_id: int | None) -> str:
        """Add a token (None: no more tokens) and return the newly releasable text."""
        if self.stopped:
            return ""
        if token_id is not None:
            self.token_ids.append(token_id)
            self.text = self.tokenizer.decode(self.token_ids, skip_special_tokens=True)
        final = token_id is None
        for s in self.stop:
            at = self.text.find(s)
            if at != -1:
                self.text = self.text[:at]
                self.stopped = True
                final = True
        releasable = len(self.text)
        if not final:
            complete = self.text.rstrip("\ufffd")  # drop an incomplete multi-byte character
            releasable = self._stop_safe_length(complete)
        releasable = max(releasable, self.emitted)
        delta = self.text[self.emitted : releasable]
        self.emitted = releasable
        return delta

    def _stop_safe_length(self, text: str) -> int:
        """Length of `text` minus a tail that could still grow into a stop string."""
        safe = len(text)
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    safe = min(safe, len(text) - k)
                    break
        return safe
