"""`python -m vision.engine MODEL --image page.png "question"` streams an answer from a shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vision.engine", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_cli_answers_about_an_image(tiny_checkpoint, tmp_path):
    page = tmp_path / "page.png"
    Image.new("RGB", (320, 240), (250, 250, 250)).save(page)
    done = _run(
        str(tiny_checkpoint),
        "--image",
        str(page),
        "--max-tokens",
        "6",
        "--dtype",
        "fp32",
        "--stats",
        "Read it",
    )
    assert done.returncode == 0, done.stderr
    assert "formats {'lm': 'fp32', 'vision': 'fp32'}" in done.stderr
    assert "completion_tokens=6" in done.stderr and "image_tokens=" in done.stderr
    assert done.stdout.endswith("\n")  # the streamed answer (random weights: often blank lines)


def test_cli_bad_dtype_is_a_clear_error(tiny_checkpoint):
    done = _run(str(tiny_checkpoint), "--dtype", "fp33", "hello")
    assert done.returncode == 1
    assert "unknown weight format 'fp33'" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_missing_model_is_a_clear_error(tmp_path):
    done = _run(str(tmp_path / "no-such-model"), "--dtype", "fp32", "hello")
    assert done.returncode == 1
    assert "error:" in done.stderr and "no-such-model" in done.stderr
    assert "Traceback" not in done.stderr


def test_tune_measures_the_model_on_demand(tiny_checkpoint, tmp_path):
    import json

    cache = tmp_path / "formats.json"
    done = _run("tune", str(tiny_checkpoint), "--cache", str(cache), "--budget", "0.2")
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["lm"] in ("fp32", "bf16", "int8") and not verdict["from_cache"]
    assert verdict["source"].startswith("weights of") and verdict["measured_at"]
    assert set(verdict["load"]) >= {"loadavg_1m", "others_cpu", "steal"}
    assert cache.exists() == verdict["calm"]


def test_tune_a_missing_model_fails_before_measuring(tmp_path):
    done = _run("tune", str(tmp_path / "no-such-model"), "--cache", str(tmp_path / "f.json"))
    assert done.returncode == 1
    assert "no-such-model" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "f.json").exists()
