"""`auto` weight formats: setting parsing, a real (tiny, fast) measurement, the per-CPU cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vision.engine import autotune
from vision.engine.autotune import FormatChoice, LayerDims, choose_formats
from vision.engine.contract import resolve_formats
from vision.engine.cpuinfo import RELEVANT_FLAGS, cpu_description

# Small shapes so the test measures for real in well under a second.
TINY = LayerDims(
    hidden=128,
    q_out=128,
    kv_out=64,
    intermediate=256,
    num_layers=2,
    vocab=1000,
    vision_hidden=64,
    vision_intermediate=256,
    vision_tokens=32,
    head_dim=32,
)


@pytest.fixture(autouse=True)
def _few_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    # TINY layers are a few KB: the LLC rule would ask for the cap of copies, i.e. hundreds of
    # tiny ops per round, and each can stall on a busy 2-core CI box. Two copies suffice here.
    monkeypatch.setattr(autotune, "_MAX_COPIES", 2)


def _machine(others_cpu: float, steal: float = 0.0):
    """A stand-in for the /proc/stat probe: the shared CI box is rarely calm, and these tests are
    about what the tuner does with a calm or a busy reading, not about the box."""

    class Probe:
        calls = 0

        def __enter__(self):
            Probe.calls += 1
            self.load = autotune.MachineLoad(loadavg_1m=3.0, others_cpu=others_cpu, steal=steal, seconds=0.1)
            return self

        def __exit__(self, *exc):
            return None

    return Probe


@pytest.fixture
def calm(monkeypatch: pytest.MonkeyPatch):
    probe = _machine(0.0)
    monkeypatch.setattr(autotune, "LoadProbe", probe)
    return probe


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("auto", ("auto", "auto")),
        ("int8", ("int8", "int8")),
        (" BF16 ", ("bf16", "bf16")),
        ("int4", ("int4", "int4")),
        ("w8a8", ("w8a8", "w8a8")),
        ("lm=int8,vision=bf16", ("int8", "bf16")),
        ("vision=fp32, lm=int4", ("int4", "fp32")),
        ("lm=int8", ("int8", "auto")),
        ("vision=auto,lm=fp32", ("fp32", "auto")),
    ],
)
def test_resolve_formats(setting: str, expected: tuple[str, str]) -> None:
    assert resolve_formats(setting) == expected


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("", "empty"),
        ("fp8", "unknown weight format 'fp8'"),
        ("lm=int3,vision=bf16", "unknown weight format 'int3' for lm"),
        ("text=int8", "bad weight-format part"),
        ("lm=int8,lm=bf16", "given twice"),
        ("lm=int8,bf16", "bad weight-format part"),
    ],
)
def test_resolve_formats_errors(setting: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_formats(setting)


def test_choose_formats_measures_then_uses_cache(tmp_path: Path, calm) -> None:
    cache = tmp_path / "formats.json"
    first = choose_formats(TINY, cache_path=cache, budget_s=0.05)
    assert not first.from_cache
    assert first.lm_format in ("fp32", "bf16", "int8")
    assert first.vision_format in ("fp32", "bf16", "int8")
    for timings in (
        first.decode_layer_s,
        first.decode_layer_m8_s,
        first.vision_gemm_s,
        first.decode_token_s,
        first.decode8_step_s,
        first.prefill_token_s,
        first.score_s,
    ):
        assert set(timings) == {"fp32", "bf16", "int8"}
        assert all(t > 0 for t in timings.values())
    # The LM format minimises the workload (prefill + batch-1 and batch-8 decode), within the margin.
    assert first.score_s[first.lm_format] <= min(first.score_s.values()) * (1 + autotune.PRECISION_MARGIN)
    assert first.activations in ("fp32", "bf16") and set(first.activation_probe_s) == {"fp32", "bf16"}
    assert first.calm and first.attempts == 1 and first.load["others_cpu"] == 0.0 and first.measured_at
    assert first.cpu_key == cpu_description().key
    assert set(first.int8_prefill_s) == {"packed", "bf16", "fp32"}
    assert first.vision_gemm_s["int8"] == first.int8_prefill_s[first.int8_prefill]
    assert cache.exists() and len(json.loads(cache.read_text())) == 1

    second = choose_formats(TINY, cache_path=cache, budget_s=0.05)
    assert second.from_cache
    assert (second.lm_format, second.vision_format) == (first.lm_format, first.vision_format)
    assert second.decode_layer_s == first.decode_layer_s
    assert second.int8_prefill_dtype == first.int8_prefill_dtype


def test_choose_formats_survives_corrupt_cache(tmp_path: Path, calm) -> None:
    cache = tmp_path / "formats.json"
    cache.write_text("{not json")
    choice = choose_formats(TINY, candidates=("fp32", "int8"), cache_path=cache, budget_s=0.02)
    assert not choice.from_cache and set(choice.decode_layer_s) == {"fp32", "int8"}
    assert choose_formats(TINY, candidates=("fp32", "int8"), cache_path=cache).from_cache


def test_choose_formats_never_auto_picks_lossy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be set explicitly"):
        choose_formats(TINY, candidates=("fp32", "int4"), cache_path=tmp_path / "c.json")


def test_pick_prefers_precision_within_margin() -> None:
    assert autotune._pick({"fp32": 1.0, "bf16": 0.98, "int8": 0.97}) == "fp32"
    assert autotune._pick({"fp32": 1.0, "bf16": 0.5, "int8": 0.49}) == "bf16"
    assert autotune._pick({"fp32": 1.0, "bf16": 0.5, "int8": 0.25}) == "int8"


def test_cpu_description() -> None:
    cpu = cpu_description()
    assert cpu.logical_cores >= cpu.physical_cores >= 1
    assert cpu.flags <= set(RELEVANT_FLAGS)
    assert cpu.torch_version in cpu.key and cpu.model_name in cpu.key
    assert cpu_description().key == cpu.key  # stable


def test_a_busy_machine_is_measured_again_and_its_verdict_never_cached(tmp_path: Path, monkeypatch) -> None:
    busy = _machine(others_cpu=0.6)
    monkeypatch.setattr(autotune, "LoadProbe", busy)
    monkeypatch.setattr(autotune, "MAX_TUNING_BUDGETS", 10**6)  # the CI box's own slowness aside
    cache = tmp_path / "formats.json"
    choice = choose_formats(TINY, cache_path=cache, budget_s=0.02, pause_s=0.0)
    assert busy.calls == autotune.MAX_ATTEMPTS
    assert not choice.calm and choice.attempts == autotune.MAX_ATTEMPTS
    assert choice.load["others_cpu"] == 0.6 and choice.lm_format in ("fp32", "bf16", "int8")
    assert not cache.exists()  # the next start measures again
    assert "BUSY" in choice.summary()
    steal = _machine(others_cpu=0.0, steal=0.2)
    monkeypatch.setattr(autotune, "LoadProbe", steal)
    assert not choose_formats(TINY, cache_path=cache, budget_s=0.02, pause_s=0.0).calm
    calm_probe = _machine(0.05)
    monkeypatch.setattr(autotune, "LoadProbe", calm_probe)
    assert choose_formats(TINY, cache_path=cache, budget_s=0.02).calm and cache.exists()
    assert calm_probe.calls == 1
    # And a forced re-measure (python -m vision.engine tune) ignores the cached verdict.
    assert not choose_formats(TINY, cache_path=cache, budget_s=0.02, force=True).from_cache
    assert choose_formats(TINY, cache_path=cache).from_cache


def test_the_load_probe_reads_proc_stat() -> None:
    import time

    with autotune.LoadProbe() as probe:
        end = time.perf_counter() + 0.1
        while time.perf_counter() < end:  # busy ourselves: our own CPU time is not "others"
            pass
    load = probe.load
    assert 0.0 <= load.others_cpu <= 1.0 and 0.0 <= load.steal <= 1.0
    assert load.loadavg_1m >= 0.0 and load.seconds > 0


def test_the_verdict_is_plain_data() -> None:
    from dataclasses import asdict

    choice = FormatChoice(
        lm_format="int8", vision_format="bf16", activations="bf16", measured_at="2026-12-01T08:00:00Z"
    )
    verdict = choice.verdict()
    assert (verdict.lm, verdict.vision, verdict.activations) == ("int8", "bf16", "bf16")
    assert json.loads(json.dumps(asdict(verdict)))["measured_at"] == "2026-12-01T08:00:00Z"


def test_a_machine_too_busy_to_measure_in_time_is_not_retried(tmp_path: Path, monkeypatch) -> None:
    busy = _machine(others_cpu=0.9)
    monkeypatch.setattr(autotune, "LoadProbe", busy)
    monkeypatch.setattr(autotune, "MAX_TUNING_BUDGETS", 0)  # every attempt overran the allowance
    choice = choose_formats(TINY, cache_path=tmp_path / "f.json", budget_s=0.02, pause_s=0.0)
    assert busy.calls == 1 and choice.attempts == 1 and not choice.calm
    assert not (tmp_path / "f.json").exists()
