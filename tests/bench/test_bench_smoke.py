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
