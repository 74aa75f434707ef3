"""Constrained decoding: a per-sequence grammar state that masks the logits before each sample.

The hook into the engine is three calls, kept here so the sampler and scheduler stay as they are:
`Engine.submit` asks `GrammarCache.state(constraint)` for a fresh `GrammarState`; before a
constrained sequence's token is chosen the scheduler calls `state.mask_(logits_row)`; after the
token is appended it calls `state.advance(token)` and finishes the sequence when `state.stopped`.
Sequences without a constraint are untouched, so constrained and free ones share every step.

The grammar engine is llguidance (an Earley parser over a lazily built lexer DFA, walking the
token trie for each mask): compiling a schema takes ~1 ms, and a mask costs tens to hundreds of
microseconds on the 151,936-token Qwen vocabulary (`python -m bench constrained`, bench/README.md).
End-of-turn tokens are in the mask only while the grammar accepts, so an answer stops only when
it is complete; `max_tokens` mid-answer ends with finish reason `length`, as without a constraint.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch

from vision.engine.constraints import Constraint

from .errors import InvalidRequest

# Compiled grammars kept per engine, most recently used first. A document type or an OpenAI
# client sends the same few schemas again and again; each entry holds the grammar and the lexer
# states built so far (~1-2 kB each, bounded by llguidance's own limits).
DEFAULT_CACHE_ENTRIES = 64


class GrammarCache:
    """Compiles constraints for one tokenizer, once per distinct constraint (bounded LRU).

    Thread-safe: `Engine.submit` runs in callers' threads. The llguidance tokenizer (the token
    trie, ~1 s for 151k tokens) is built at the first constrained request, not at model load.
    """

    def __init__(
        self, tokenizer, vocab_size: int, eos_ids: frozenset[int], capacity: int = DEFAULT_CACHE_ENTRIES
    ):
        self._hf_tokenizer = tokenizer
        self.vocab_size = vocab_size  # logits width: the lm_head's rows, >= the tokenizer's size
        self.eos_ids = sorted(eos_ids)
        self.capacity = capacity
        self._lltokenizer = None
        self._templates: OrderedDict[str, object] = OrderedDict()  # key -> llguidance.LLMatcher
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def state(self, constraint: Constraint) -> GrammarState:
        """A fresh grammar state for one sequence; raises InvalidRequest if it does not compile."""
        template = self._template(constraint)
        return GrammarState(template.deep_copy(), self.vocab_size)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._templates), "hits": self.hits, "misses": self.misses}

    def _template(self, constraint: Constraint):
        import llguidance

        key = constraint.key
        with self._lock:
            template = self._templates.get(key)
            if template is not None:
                self._templates.move_to_end(key)
                self.hits += 1
                return template
            tokenizer = self._tokenizer()
        # Compile outside the lock (llguidance drops the GIL), so one big schema does not hold up
        # requests whose grammars are cached. Two threads compiling the same schema both succeed.
        try:
            grammar = constraint.grammar()
        except ValueError as exc:  # text that is not what its kind says (e.g. a schema that is no JSON)
            raise InvalidRequest(f"the constraint is malformed: {exc}") from exc
        template = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if template.is_error():
            raise InvalidRequest(f"the constraint does not compile: {template.get_error()}")
        with self._lock:
            self.misses += 1
            self._templates[key] = template
            self._templates.move_to_end(key)
            while len(self._templates) > self.capacity:
                self._templates.popitem(last=False)
        return template

    def _tokenizer(self):
        """The llguidance view of the model's tokenizer (called under the lock)."""
        if self._lltokenizer is None:
            import copy

            import llguidance

            # What llguidance.hf.from_tokenizer does, without its PreTrainedTokenizerFast check
            # (transformers 5 names the fast tokenizer class differently).
            backend = copy.copy(self._hf_tokenizer.backend_tokenizer)
            backend.no_padding()
            backend.no_truncation()
            self._lltokenizer = llguidance.LLTokenizer(
                backend.to_str(), n_vocab=self.vocab_size, eos_token=self.eos_ids
            )
        return self._lltokenizer


class GrammarState:
    """One sequence's position in its grammar."""

    def __init__(self, matcher, vocab_size: int):
        self._matcher = matcher  # llguidance.LLMatcher
        self._bitmask = torch.full(((vocab_size + 31) // 32,), -1, dtype=torch.int32)

    def mask_(self, logits: torch.Tensor) -> None:
        """Set the logits of tokens the grammar forbids next to -inf, in place. `logits`: (vocab,)."""
        bitmask = self._bitmask
        self._matcher.unsafe_compute_mask_ptr(bitmask.data_ptr(), bitmask.numel() * 4)
        if self._matcher.is_error():
            raise RuntimeError(f"constraint failed: {self._matcher.get_error()}")
        apply_bitmask_(logits, bitmask)

    def advance(self, token: int) -> bool:
        """Move past a sampled token; False if the grammar refuses it (then the state is broken)."""
        return self._matcher.consume_token(token)

    @property
    def accepting(self) -> bool:
        """The answer so far is complete: the grammar may end here."""
        return self._matcher.is_accepting()

    @property
    def stopped(self) -> bool:
        """Nothing but end-of-turn can follow: the answer is complete and the sequence can end."""
        return self._matcher.is_stopped()

    @property
    def error(self) -> str:
        return self._matcher.get_error()


def apply_bitmask_(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """`bitmask`: (ceil(vocab / 32),) int32, bit t % 32 of word t // 32 set when token t is allowed.

    Word by word in numpy, single-threaded: a word of 0 forbids 32 tokens in one row write, a word
    of -1 allows them all and costs nothing, and only mixed words are unpacked into bits. Real
    masks are mostly one or the other (a JSON structure state allows a few tokens, a string state
    nearly all), so this costs about what the argmax over the row does (bench/README.md). Not
    llguidance.torch's helper: it runs through torch.compile, which on a CPU box means a C++
    toolchain at first use and seconds of compile in the engine thread; and torch's own parallel
    element-wise ops lose milliseconds to thread barriers on a shared two-core machine.
    """
    with torch.inference_mode():  # the runner's logits are inference tensors
        row = logits.numpy()
    words = bitmask.numpy()
    full = min(len(words), row.shape[0] // 32)  # words covering 32 real tokens each
    blocks = row[: full * 32].reshape(full, 32)
    blocks[words[:full] == 0] = -np.inf
    mixed = np.flatnonzero((words[:full] != 0) & (words[:full] != -1))
    if mixed.size:
        bits = np.unpackbits(words[mixed].view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")
        part = blocks[mixed]
        part[bits == 0] = -np.inf
        blocks[mixed] = part
    tail = row.shape[0] - full * 32  # a vocabulary that is not a multiple of 32
    if tail:
        bits = np.unpackbits(words[full : full + 1].view(np.uint8), bitorder="little")[:tail]
        row[full * 32 :][bits == 0] = -np.inf
