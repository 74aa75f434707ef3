"""Incremental detokenization and token choice, with the tiny checkpoint's real tokenizer."""

from __future__ import annotations

import pytest
import torch

from vision.engine import sampling
from vision.engine.contract import SamplingDefaults, SamplingParams
from vision.engine.sampling import Sampler, TextStream, candidate_distributions, choose_tokens

CHINESE = "发票号码：12345678，开票日期：2026年11月24日，价税合计：¥1,234.50。Invoice total 1234.50"


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


def _stream(tokenizer, text: str, stop=()) -> tuple[list[str], TextStream]:
    stream = TextStream(tokenizer, tuple(stop))
    deltas = [stream.push(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]
    deltas.append(stream.push(None))
    return deltas, stream


def test_chinese_streams_without_broken_characters(tokenizer):
    ids = tokenizer(CHINESE, add_special_tokens=False)["input_ids"]
    # Byte-level BPE splits some characters over several tokens: that is what this test is about.
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)
    deltas, _ = _stream(tokenizer, CHINESE)
    assert "".join(deltas) == CHINESE
    assert all("\ufffd" not in d for d in deltas)


def test_stop_string_is_cut_and_never_leaked(tokenizer):
    deltas, stream = _stream(tokenizer, CHINESE, stop=("价税合计",))
    assert "".join(deltas) == "发票号码：12345678，开票日期：2026年11月24日，"
    assert stream.stopped
    assert not any("价" in d for d in deltas)


def test_partial_stop_string_is_released_when_it_does_not_complete(tokenizer):
    deltas, stream = _stream(tokenizer, "total 1234 tot", stop=("totals",))
    assert "".join(deltas) == "total 1234 tot"
    assert not stream.stopped


def test_greedy_and_eos_suppression():
    logits = torch.tensor([0.0, 5.0, 1.0, 9.0])  # token 3 is the end-of-turn token
    eos = frozenset({3})
    assert Sampler(SamplingParams(), eos).choose(logits, 0) == 3
    assert Sampler(SamplingParams(min_tokens=2), eos).choose(logits, 1) == 1
    assert Sampler(SamplingParams(min_tokens=2), eos).choose(logits, 2) == 3
    assert Sampler(SamplingParams(ignore_eos=True), eos).choose(logits, 50) == 1


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.05, 0.05]))
    sampler = Sampler(SamplingParams(temperature=1.0, top_p=0.8, seed=1), frozenset())
    picks = {sampler.choose(logits, 0) for _ in range(300)}
    assert picks == {0, 1}


# -- top-k / top-p without sorting the vocabulary --------------------------------------------------
VOCAB = 151_936  # Qwen3-VL's vocabulary


def _reference(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """transformers' own warpers (sort-based), applied in generate's order: the distribution over
    the whole vocabulary that sampling should follow."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    scores = logits[None].clone()
    scores = TemperatureLogitsWarper(params.temperature)(None, scores)
    if params.top_k:
        scores = TopKLogitsWarper(params.top_k)(None, scores)
    if params.top_p < 1.0:
        scores = TopPLogitsWarper(params.top_p)(None, scores)
    return torch.softmax(scores, dim=-1)[0]


def _boundary_margin(logits: torch.Tensor, params: SamplingParams) -> float:
    """How far from p the exact (float64) mass ahead of any candidate is: the nucleus is decided
    by a margin this wide, so float64 arithmetic decides it as exact arithmetic does and any
    disagreement larger than float64's ~1e-12 is an error of the side that disagrees."""
    scaled = torch.sort(logits.double() / params.temperature, descending=True).values
    if params.top_k:
        scaled = scaled[: params.top_k]
    probs = torch.softmax(scaled, dim=-1)
    ahead = torch.cumsum(probs, dim=-1) - probs
    return float((ahead - params.top_p).abs().min())


def _ours(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    ids, probs = candidate_distributions(logits[None], [params])
    full = torch.zeros(logits.shape[0], dtype=torch.float64)
    full[ids[0]] = probs[0].double()
    return full


def _params(**kw) -> SamplingParams:
    return SamplingParams(**kw).resolved(SamplingDefaults())


CASES = [
    dict(temperature=0.7, top_k=20, top_p=0.8),  # Qwen3-VL's generation_config.json
    dict(temperature=1.0, top_k=0, top_p=0.9),  # nucleus alone, no top-k cut
    dict(temperature=1.3, top_k=5, top_p=1.0),  # top-k alone
    dict(temperature=0.5, top_k=200, top_p=0.5),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "k{top_k}-p{top_p}-t{temperature}".format(**c))
def test_candidates_equal_the_sort_based_reference_on_the_full_vocabulary(case):
    generator = torch.Generator().manual_seed(3)
    # Peaked like a language model's logits: a few strong candidates over a long flat tail.
    logits = torch.randn(VOCAB, generator=generator) * 2.0
    logits[torch.randperm(VOCAB, generator=generator)[:40]] += 9.0
    params = _params(**case)
    ref, ours = _reference(logits, params), _ours(logits, params)
    kept = set(torch.nonzero(ref).flatten().tolist())
    assert set(torch.nonzero(ours).flatten().tolist()) == kept
    assert 1 < len(kept) < VOCAB
    assert torch.allclose(ours, ref.double(), atol=1e-6)
    # The same kept set as transformers' warpers in float64 (the exact cut: see _boundary_margin).
    assert torch.equal(ours > 0, _reference(logits.double(), params) > 0)
    if params.top_p < 1.0:
        assert _boundary_margin(logits, params) > 1e-7  # a decided cut, not a tie within rounding


def test_a_flat_distribution_whose_nucleus_is_wider_than_the_candidates_is_still_exact():
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(4)) * 0.01
    params = _params(temperature=1.0, top_k=0, top_p=0.9)
    ref, ours = _reference(logits, params), _ours(logits, params)
    assert (ref > 0).sum() > sampling.NUCLEUS_CANDIDATES
    assert torch.equal(ours > 0, ref > 0)
    assert torch.allclose(ours, ref.double(), atol=1e-7)
    assert torch.equal(ours > 0, _reference(logits.double(), params) > 0)
    assert _boundary_margin(logits, params) > 1e-7


def test_the_nucleus_cut_is_decided_in_float64_not_by_an_fp32_normaliser():
    """A row whose exact mass ahead of a boundary candidate is only 3e-7 below p: an fp32
    normaliser of the whole vocabulary (off by 4e-7 to 2.4e-6 of the total on AVX2) can flip it.
    The candidates' kept set equals the float64 reference's on every CPU."""
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(3)) * 2.0
    logits[torch.randperm(VOCAB, generator=torch.Generator().manual_seed(8))[:40]] += 9.0
    scaled = torch.sort(logits.double(), descending=True).values
    probs = torch.softmax(scaled, dim=-1)
    ahead = torch.cumsum(probs, dim=-1) - probs
    # p just above the mass ahead of the 30,000th candidate: that candidate is kept, the next cut.
    top_p = float(ahead[30_000]) + 3e-7
    assert float(ahead[30_001]) > top_p + 1e-7
    params = _params(temperature=1.0, top_k=0, top_p=top_p)
    ours = _ours(logits, params)
    assert int((ours > 0).sum()) == 30_001
    assert torch.equal(ours > 0, _reference(logits.double(), params) > 0)


def test_seeded_draws_follow_the_renormalised_top_k_top_p_distribution():
    vocab, draws = 1000, 20_000
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(5)) * 3.0
    params = SamplingParams(temperature=0.7, top_k=20, top_p=0.8, seed=11)
    expected = _reference(logits, params.resolved(SamplingDefaults())).double()
    sampler = Sampler(params, frozenset())
    counts = torch.zeros(vocab, dtype=torch.float64)
    batch = logits.expand(50, vocab)
    for _ in range(draws // 50):  # the same sampler on 50 rows per call: its generator advances
        for token in choose_tokens(batch, [sampler] * 50, [0] * 50):
            counts[token] += 1
    freq = counts / draws
    assert set(torch.nonzero(counts).flatten().tolist()) <= set(torch.nonzero(expected).flatten().tolist())
    # Binomial: each frequency within 5 standard deviations of its probability (seeded, so stable).
    sigma = torch.sqrt(expected * (1 - expected) / draws)
    assert torch.all((freq - expected).abs() <= 5 * sigma + 1e-9)
    assert (expected > 0.01).sum() >= 3  # a real spread of candidates, not one sure token


def test_a_seeded_request_draws_the_same_tokens_alone_and_in_a_batch():
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(4, VOCAB, generator=generator) * 4.0

    def samplers():
        return [
            Sampler(SamplingParams(seed=21), frozenset(), defaults=QWEN),
            Sampler(SamplingParams(temperature=0.0), frozenset(), defaults=QWEN),  # greedy in the batch
            Sampler(SamplingParams(seed=22, top_k=0, top_p=0.95), frozenset(), defaults=QWEN),
            Sampler(SamplingParams(seed=23, temperature=1.0, top_k=50), frozenset(), defaults=QWEN),
        ]

    together = choose_tokens(logits, samplers(), [0] * 4)
    alone = [choose_tokens(logits[i : i + 1], [s], [0])[0] for i, s in enumerate(samplers())]
    assert together == alone
    assert together[1] == int(logits[1].argmax())
    many = samplers()
    runs = [tuple(choose_tokens(logits, many, [0] * 4)) for _ in range(20)]
    assert len(set(runs)) > 1  # sampled rows really sample


QWEN = SamplingDefaults(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.0)


def test_unset_fields_take_the_checkpoint_defaults_and_explicit_ones_win():
    assert SamplingParams().resolved(QWEN) == SamplingParams(
        temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.0
    )
    explicit = SamplingParams(temperature=0.0, top_p=0.5).resolved(QWEN)
    assert (explicit.temperature, explicit.top_p, explicit.top_k) == (0.0, 0.5, 20)
    assert explicit.greedy
    # A checkpoint without do_sample (or without the file) means greedy, as in transformers.
    assert SamplingParams().resolved(SamplingDefaults(temperature=0.6)).greedy
    assert not SamplingParams(temperature=1.0).resolved(SamplingDefaults()).greedy


def test_generation_config_is_read_from_the_checkpoint(tiny_checkpoint, tmp_path):
    from vision.engine.pretrained import sampling_defaults

    assert sampling_defaults(tiny_checkpoint) == QWEN
    assert sampling_defaults(tmp_path) == SamplingDefaults()  # no file: greedy
    (tmp_path / "generation_config.json").write_text('{"do_sample": true, "top_k": "x", "temperature": 0.9}')
    assert sampling_defaults(tmp_path) == SamplingDefaults(do_sample=True, temperature=0.9)


def test_repetition_penalty_matches_transformers():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    logits = torch.randn(1, 64, generator=torch.Generator().manual_seed(7)) * 3
    seen = [3, 5, 9, 40]
    ours = Sampler(SamplingParams(temperature=0.0, repetition_penalty=1.3), frozenset(), prompt_ids=seen[:2])
    for token in seen[2:]:
        ours.accept(token)
    expected = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([seen]), logits.clone())
    assert ours.choose(logits[0], 0) == int(expected.argmax())
    edited = logits.clone()
    sampling._penalise(edited[0], ours.seen, 1.3)
    assert torch.allclose(edited, expected)
    assert not torch.equal(edited, logits)
