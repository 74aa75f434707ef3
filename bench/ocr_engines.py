"""`python -m bench ocr`'s two engines: Tesseract (its CLI, one process a page) and ours
(`OcrEngine` in this process), their setup, and the character error rate both are scored by."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

from PIL import Image

# Language of a page (truth.json's `language`, or the generator's script) -> Tesseract pack.
TESS_LANG = {"en": "eng", "zh": "chi_sim", "de": "deu", "fr": "fra", "nl": "nld", "it": "ita", "es": "spa"}
APT_PACKAGES = ["tesseract-ocr"] + [
    f"tesseract-ocr-{x.replace('_', '-')}" for x in sorted(set(TESS_LANG.values()))
]


# -- setup ----------------------------------------------------------------------------------------


def _tesseract_langs() -> set[str]:
    try:
        out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.strip() for line in out.stdout.splitlines()[1:] if line.strip()}


def ensure_setup(install: bool, need_tesseract: bool, languages: set[str]) -> None:
    """Check (or with `install`, install) rapidfuzz and tesseract with the packs the pages need."""
    missing: list[str] = []
    try:
        import rapidfuzz  # noqa: F401
    except ImportError:
        if install:
            subprocess.run([sys.executable, "-m", "pip", "install", "rapidfuzz"], check=True)
        else:
            missing.append(f"{sys.executable} -m pip install rapidfuzz")
    if need_tesseract:
        packs = {TESS_LANG[x] for x in languages}
        if shutil.which("tesseract") is None or not packs <= _tesseract_langs():
            apt = ["apt-get", "install", "-y", *APT_PACKAGES]
            if install and os.geteuid() == 0:
                subprocess.run(["apt-get", "update"], check=False)
                subprocess.run(apt, check=True)
            else:
                missing.append(" ".join(apt) + "   (as root)")
    if missing:
        raise SystemExit("bench ocr needs (or run it with --setup):\n  " + "\n  ".join(missing))


# -- scoring --------------------------------------------------------------------------------------

_CJK = re.compile(r"([\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef])")


def normalise(text: str) -> str:
    """Reading order removed: NFKC, casefold, each CJK character a token, tokens sorted."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(sorted(_CJK.sub(r" \1 ", text).split()))


def cer(hypothesis: str, truth: str) -> float:
    from rapidfuzz.distance import Levenshtein

    ref = normalise(truth)
    return Levenshtein.distance(normalise(hypothesis), ref) / max(1, len(ref))


# -- engines --------------------------------------------------------------------------------------


def run_tesseract(image_path: Path, language: str, threads: int) -> tuple[str, float, float]:
    """Text, wall seconds and CPU seconds (children's user+system) of one `tesseract` run."""
    env = {**os.environ, "OMP_THREAD_LIMIT": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        ["tesseract", str(image_path), "stdout", "--psm", "3", "-l", TESS_LANG[language]],
        capture_output=True,
        env=env,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out.stdout.decode("utf-8", "replace"), wall, cpu


def run_ours(engine, image: Image.Image) -> tuple[str, float, float, dict]:
    cpu0, started = time.process_time(), time.perf_counter()
    result = engine.read(image)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return result.text, wall, cpu, dict(getattr(engine, "last_timings", {}) or {})
