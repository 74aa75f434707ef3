"""The engine's contract checks its own bounds: every caller gets the same error, naming the field."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from vision.engine.contract import (
    MAX_STOP_LENGTH,
    MAX_STOP_SEQUENCES,
    InvalidSampling,
    SamplingDefaults,
    SamplingParams,
)


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"top_k": -2}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"repetition_penalty": float("inf")}, "repetition_penalty"),
        ({"seed": "x"}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"stop": ["a"] * (MAX_STOP_SEQUENCES + 1)}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": ["x" * (MAX_STOP_LENGTH + 1)]}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"stop": {"a": 1}}, "stop"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"max_tokens": 4, "min_tokens": 5}, "min_tokens"),
        ({"ignore_eos": 1}, "ignore_eos"),
    ],
)
def test_a_field_out_of_bounds_is_refused_naming_it(fields, field):
    with pytest.raises(InvalidSampling) as caught:
        SamplingParams(**fields)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_the_bounds_themselves_are_accepted_and_normalised():
    params = SamplingParams(
        max_tokens=1, temperature=2, top_p=1, top_k=-1, repetition_penalty=1, seed=2**64 - 1, stop="END"
    )
    assert (params.temperature, params.top_p, params.top_k, params.repetition_penalty) == (2.0, 1.0, 0, 1.0)
    assert isinstance(params.temperature, float) and params.stop == ("END",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    assert SamplingParams(seed=-(2**63), temperature=0).greedy


def test_replace_and_resolved_check_again():
    from dataclasses import replace

    with pytest.raises(InvalidSampling, match="top_p"):
        replace(SamplingParams(), top_p=0.0)
    resolved = SamplingParams().resolved(
        SamplingDefaults(do_sample=True, temperature=0.7, top_k=20, top_p=0.8)
    )
    assert (resolved.temperature, resolved.top_k, resolved.top_p) == (0.7, 20, 0.8)


def test_checkpoint_defaults_out_of_bounds_keep_the_neutral_value():
    defaults = SamplingDefaults.from_dict({"do_sample": True, "temperature": 7, "top_p": 0, "top_k": 20})
    assert (defaults.temperature, defaults.top_p, defaults.top_k) == (1.0, 1.0, 20)


def test_the_contract_imports_no_torch():
    code = "import sys, vision.engine.contract, vision.engine.constraints; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
