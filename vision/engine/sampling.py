"""Choosing the next token, and turning tokens into a text stream.

Streaming text is not per-token decoding: a Chinese character is often two or three byte-level BPE
tokens, and decoding them one at a time yields U+FFFD halves. `TextStream` decodes the whole output
so far and releases only text that is complete (no trailing U+FFFD) and cannot be the beginning of a
stop string, so what a client concatenates is exactly the final text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .contract import SamplingDefaults, SamplingParams

# Without a top-k cut, top-p still looks at no more than this many candidates unless they hold
# less than top_p of the probability (a nearly flat distribution); then that row is sorted in full.
# torch.topk of 8 x 151,936 logits for 1,024 candidates costs about what k=20 does: the selection
# scans the row once either way.
NUCLEUS_CANDIDATES = 1024


class Sampler:
    """One request's token-choice state: its resolved parameters, its own seeded generator (so a
    seeded request draws the same tokens alone or in any batch) and the tokens it has seen (for the
    repetition penalty). The choice itself is `choose_tokens`, for the whole batch at once."""

    def __init__(
        self,
        params: SamplingParams,
        eos_ids: frozenset[int],
        prompt_ids: Sequence[int] = (),
        defaults: SamplingDefaults | None = None,
    ):
        self.params = params.resolved(defaults or SamplingDefaults())
        self.eos_ids = sorted(eos_ids)
        self.generator: torch.Generator | None = None
        if not self.params.greedy:
            self.generator = torch.Generator()
            if params.seed is not None:
                self.generator.manual_seed(params.seed)
            else:
                self.generator.seed()
        # transformers and vLLM penalise prompt tokens as well as generated ones.
        self.seen: set[int] = set(prompt_ids) if self.params.repetition_penalty != 1.0 else set()

    def accept(self, token: int) -> None:
        """Record a generated token (the repetition penalty's memory)."""
        if self.params.repetition_penalty != 1.0:
            self.seen.add(token)

    def choose(self, logits: torch.Tensor, produced: int) -> int:
        """One row: `logits` (vocab,) float32; `produced`: tokens generated so far."""
        return choose_tokens(logits[None], [self], [produced])[0]


def choose_tokens(logits: torch.Tensor, samplers: Sequence[Sampler], produced: Sequence[int]) -> list[int]:
    """The next token of every request in a step.

    `logits`: (B, vocab) float32, row i for `samplers[i]`, which has produced `produced[i]` tokens.
    Order of work, as in transformers' logits processors: end-of-turn suppression and the
    repetition penalty edit the raw logits (a grammar mask belongs there too, before any choice);
    then greedy rows take the argmax and sampled rows go through temperature, top-k, top-p.
    """
    edited = False
    for row, (sampler, n) in enumerate(zip(samplers, produced, strict=True)):
        p = sampler.params
        suppress = bool(sampler.eos_ids) and (p.ignore_eos or n < p.min_tokens)
        if not suppress and not sampler.seen:
            continue
        if not edited:
            logits = logits.clone()  # the caller's tensor stays as the model produced it
            edited = True
        if suppress:
            logits[row, sampler.eos_ids] = float("-inf")
        if sampler.seen:
            _penalise(logits[row], sampler.seen, p.repetition_penalty)

    tokens = [0] * len(samplers)
    greedy = [i for i, s in enumerate(samplers) if s.params.greedy]
    sampled = [i for i, s in enumerate(samplers) if not s.params.greedy]
    if greedy:
        picks = logits[greedy].argmax(dim=-1) if len(greedy) < len(samplers) else logits.argmax(dim=-1)
        for i, t in zip(greedy, picks.tolist(), strict=True):
            tokens[i] = t
    if sampled:
        rows = logits[sampled] if len(sampled) < len(samplers) else logits
        ids, probs = candidate_distributions(rows, [samplers[i].params for i in sampled])
        picks = _draw(probs, [samplers[i].generator for i in sampled])
        for i, t in zip(sampled, ids.gather(1, picks[:, None])[:, 0].tolist(), strict=True):
            tokens[i] = t
    return tokens


def _draw(probs: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One index per row of `probs` (R, K), each from its own request's generator: one uniform
    number per row (1-2 us, where a multinomial call per row costs ~13 us) and one inverse-CDF
    lookup for the whole batch."""
    cdf = torch.cumsum(probs.double(), dim=-1)  # (R, K)
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    picks = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]
    return picks.clamp_(max=probs.shape[1] - 1)


def _penalise(row: torch.Tensor, seen: set[int], penalty: float) -> None:
    """transformers' RepetitionPenaltyLogitsProcessor: seen tokens' logits divided by the penalty
    when positive, multiplied when negative."""
    index = torch.tensor(sorted(seen), dtype=torch.long)
    values = row[index]
    row[index] = torch.where(values > 0, values / penalty, values * penalty)


def candidate_distributions(
    logits: torch.Tensor, params: Sequence[SamplingParams]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's sampling distribution over its few candidates, without sorting the vocabulary.

    `logits`: (R, vocab) float32; `params`: resolved, non-greedy, one per row. Returns (ids, probs),
    both (R, K): candidate token ids, most likely first, and their float64 probabilities after
    temperature -> top-k -> top-p, renormalised (0 for candidates cut by a row's own k or p).

    top-k is a selection (torch.topk, one pass over the row), then top-p runs on those k values
    only: the same kept set and probabilities as transformers' sort of the whole vocabulary (tested
    against that reference), at ~0.2 ms per row instead of ~12 ms. Rows without a top-k cut take
    the NUCLEUS_CANDIDATES most likely tokens; with the full-vocabulary normaliser they give exact
    probabilities, and a row whose nucleus does not fit in them is sorted in full.

    The masses top-p compares are float64 (`_masses`): the exponentials are fp32 (torch's vector
    exp, ~1 ulp each), their sum and the cumulative mass ahead of each candidate float64. An fp32
    normaliser was off by 4e-7 (logsumexp) to 2.4e-6 (softmax of the sorted row) of the total on
    AVX2, and the mass ahead of a candidate near p = 0.9 inherits 0.9 times that: on AVX2 the
    nucleus gained or lost a token whose exact mass ahead was 2.1e-6 from p (tests). In float64 the
    masses are within ~2e-9 of exact arithmetic on every CPU, for ~0.1 ms more per row.
    """
    rows, vocab = logits.shape
    temps = torch.tensor([p.temperature for p in params], dtype=logits.dtype)[:, None]
    top_ks = [p.top_k if 0 < p.top_k < vocab else 0 for p in params]
    top_ps = torch.tensor([p.top_p for p in params], dtype=torch.float64)[:, None]
    scaled = logits / temps
    uncut = [i for i, k in enumerate(top_ks) if k == 0]
    want = NUCLEUS_CANDIDATES if uncut else max(top_ks)
    if uncut and all(params[i].top_p >= 1.0 for i in uncut):
        want = vocab  # plain temperature sampling over everything
    width = min(vocab, max(want, *top_ks))
    values, ids = torch.topk(scaled, width, dim=-1)  # (R, width), descending
    limit = torch.tensor([k or width for k in top_ks])[:, None]
    in_k = torch.arange(width)[None, :] < limit
    values = values.masked_fill(~in_k, float("-inf"))
    # Normaliser: over the k candidates for a top-k row (transformers renormalises after top-k), over
    # the whole vocabulary for an uncut row.
    weights = _masses(values, values[:, :1])
    total = weights.sum(dim=-1, keepdim=True)
    if uncut:
        total[uncut] = _masses(scaled[uncut], values[uncut, :1]).sum(dim=-1, keepdim=True)
    probs = weights / total
    covered = probs.sum(dim=-1)  # of the whole row's mass, before the top-p cut
    probs = _nucleus(probs, top_ps)
    if width < vocab and uncut:
        flat = [i for i in uncut if float(covered[i]) < params[i].top_p]
        if flat:
            return _with_full_sort(scaled, ids, probs, top_ps, flat)
    return ids, probs


def _masses(values: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """exp(values - top) as float64: the exponentials in fp32 (vectorized; widening is exact), so
    their sums and cumulative sums, taken in float64, carry no fp32 rounding of their own."""
    return torch.exp(values - top).double()


def _nucleus(probs: torch.Tensor, top_ps: torch.Tensor) -> torch.Tensor:
    """top-p on rows of float64 probabilities, most likely first: a candidate is kept while the
    mass strictly ahead of it is below p (the first always), then the row is renormalised."""
    ahead = torch.cumsum(probs, dim=-1) - probs
    kept = torch.where(ahead < top_ps, probs, torch.zeros_like(probs))
    return kept / kept.sum(dim=-1, keepdim=True)


def _with_full_sort(
    scaled: torch.Tensor, ids: torch.Tensor, probs: torch.Tensor, top_ps: torch.Tensor, flat: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rare: nearly flat rows whose nucleus exceeds NUCLEUS_CANDIDATES. Those rows are sorted in
    full; the others keep their candidates, padded with zero-probability ids."""
    rows, vocab = scaled.shape
    out_ids = torch.zeros(rows, vocab, dtype=ids.dtype)
    out_probs = torch.zeros(rows, vocab, dtype=probs.dtype)
    out_ids[:, : ids.shape[1]] = ids
    out_probs[:, : probs.shape[1]] = probs
    values, order = torch.sort(scaled[flat], dim=-1, descending=True)
    full = _masses(values, values[:, :1])
    out_ids[flat] = order
    out_probs[flat] = _nucleus(full / full.sum(dim=-1, keepdim=True), top_ps[flat])
    return out_ids, out_probs


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
