"""Incremental detokenization and token choice, with the tiny checkpoint's real tokenizer."""

from __future__ import annotations

import pytest
import torch

from vision.engine.sampling import Sampler, TextStream
from vision.engine.types import SamplingParams

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
