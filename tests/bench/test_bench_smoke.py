"""Smoke test of the benchmark harness on the tiny checkpoint: it runs and writes the documented
JSON/Markdown/PNG shapes. Timings are never asserted (they belong in bench/results, not in pass/fail)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import main
from tests.engine.conftest import build_cached_checkpoint


def test_seed_table_writes_results(tmp_path: Path) -> None:
    """GIVEN the tiny checkpoint WHEN the seed table runs one row with 2 tokens at fp32
    THEN the JSON holds the baseline and both pixel modes, the Markdown and the chart exist."""
    checkpoint = build_cached_checkpoint("tiny")
    argv = ["seed-table", "--checkpoint", str(checkpoint), "--rows", "sketch", "--tokens", "2"]
    argv += ["--dtypes", "fp32", "--decode-tokens", "3", "--tag", "smoke", "--out", str(tmp_path)]

    assert main(argv) == 0

    data = json.loads((tmp_path / "seed-table-smoke.json").read_text())
    assert data["kind"] == "seed-table"
    assert set(data["run"]) >= {"loadavg_start", "loadavg_end", "machine", "command"}
    assert set(data["run"]["machine"]) >= {"cpu_model", "flags", "physical_cores", "bandwidth_gbs"}
    (row,) = data["rows"]
    assert row["row"] == "sketch"
    assert row["baseline"]["completion_tokens"] == 2
    same, defaults = row["ours"]["fp32"]["same"], row["ours"]["fp32"]["defaults"]
    assert same["image_tokens"] == row["baseline"]["image_tokens"]  # same pixels means the same grid
    assert same["completion_tokens"] == defaults["completion_tokens"] == 2
    assert {"speedup_e2e", "ttft_s", "e2e_s", "peak_rss_mib"} <= set(same)
    (phase,) = data["phases"]
    assert phase["formats"] == {"lm": "fp32", "vision": "fp32"}
    assert {"floor_s_per_token", "measured_s_per_token", "floor_fraction"} <= set(phase["decode"])
    assert "| image |" in (tmp_path / "seed-table-smoke.md").read_text()
    assert (tmp_path / "seed-table-smoke.png").stat().st_size > 0


def test_batching_writes_its_table_and_ceiling(tmp_path: Path) -> None:
    """GIVEN the tiny checkpoint WHEN the batching bench runs 2 image requests of 3 tokens
    THEN the JSON holds both modes and the ceiling's numbers, and the Markdown states them."""
    checkpoint = build_cached_checkpoint("tiny")
    argv = ["batching", "--checkpoint", str(checkpoint), "--concurrency", "1,2", "--tokens", "3"]
    argv += ["--image-size", "320x240", "--tag", "smoke", "--out", str(tmp_path)]

    assert main(argv) == 0

    data = json.loads((tmp_path / "batching-smoke.json").read_text())
    assert data["sequential"]["requests"] == 2 and data["sequential"]["tokens"] == 6
    assert set(data["concurrent"]) == {"1", "2"}
    limits = data["ceiling"]
    assert limits["flops_per_request_g"] > 0 and limits["decode_step_2_s"] > 0
    assert limits["first_token_s"] == data["sequential"]["mean_ttft_s"]
    assert limits["schedule_ceiling"] > 0 and limits["int8_peak_gops"] > 0
    # first_token_together_s is the slowest first token of the two together, halved and rounded to
    # the millisecond (the latency is rounded too): never more than half the batch's latency, give
    # or take that rounding.
    assert 0 < limits["first_token_together_s"] <= data["concurrent"]["2"]["max_latency_s"] / 2 + 0.001
    text = (tmp_path / "batching-smoke.md").read_text()
    assert "How far batching can go" in text and f"{limits['peak_ceiling']}×" in text
