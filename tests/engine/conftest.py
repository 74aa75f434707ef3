"""Engine test fixtures: the tiny random-weight Qwen3-VL checkpoint, built once and cached.

The checkpoint is cached under `<repo>/.cache/checkpoints/` keyed by a hash of the writer's
source, its tokenizer corpus and the transformers version, so editing the writer rebuilds it
and an unchanged writer costs nothing after the first run. Engine tests touch no database.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = REPO_ROOT / ".cache" / "checkpoints"


def _writer_key() -> str:
    import transformers

    from vision.engine.testing import checkpoint, corpus, tokenizer

    digest = hashlib.sha256()
    for module in (checkpoint, tokenizer, corpus):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(Path(tokenizer.__file__).with_name("chat_template.jinja").read_bytes())
    digest.update(transformers.__version__.encode())
    return f"v{checkpoint.WRITER_VERSION}-{digest.hexdigest()[:12]}"


def build_cached_checkpoint(size: str = "tiny", seed: int = 0) -> Path:
    """Path of a cached checkpoint, writing it first if absent or incomplete.

    Safe when several pytest processes race: each writes into its own temporary folder and the
    first rename wins; the others discard their copy.
    """
    from vision.engine.pretrained import missing_files
    from vision.engine.testing.checkpoint import write_checkpoint

    final = CACHE_ROOT / f"{size}-seed{seed}-{_writer_key()}"
    if final.is_dir() and not missing_files(final):
        return final
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{size}-", dir=CACHE_ROOT))
    try:
        built = write_checkpoint(scratch / "checkpoint", size=size, seed=seed)
        if final.is_dir() and missing_files(final):
            shutil.rmtree(final, ignore_errors=True)  # a broken leftover, e.g. deleted files
        try:
            os.rename(built, final)
        except OSError:
            if not final.is_dir():
                raise  # not a lost race: a real filesystem problem
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """Folder of the tiny random-weight Qwen3-VL checkpoint (real file layout, ~2.4 MB).

    Shared by the whole session and by later sessions: treat it as read-only (copy it to
    tmp_path before changing files).
    """
    return build_cached_checkpoint("tiny")


@pytest.fixture(scope="module")
def lively(tiny_checkpoint: Path):
    """The tiny checkpoint with its weights redrawn wider so its outputs vary (`make_lively`),
    loaded once per test module."""
    from tests.engine.engine_helpers import make_lively
    from vision.engine.pretrained import load_model

    loaded = load_model(str(tiny_checkpoint), progress=False)
    make_lively(loaded)
    return loaded


@pytest.fixture
def tiny_model(tiny_checkpoint: Path):
    """A fresh `LoadedModel` of the tiny checkpoint in fp32 (~0.2 s), free to mutate."""
    from vision.engine.pretrained import load_model

    return load_model(str(tiny_checkpoint), progress=False)


@pytest.fixture(scope="module")
def built() -> object:
    """The compiled kernels' extension module (`kernels.module()`); the kernel tests fail, not
    skip, where it did not build."""
    from vision.engine import kernels

    mod = kernels.module()
    assert mod is not None, "the kernels did not build on the test machine (g++ and ninja are required here)"
    return mod


def _kernel_paths() -> tuple[str, ...]:
    from vision.engine.kernels import ISAS

    return ISAS


@pytest.fixture(params=_kernel_paths())
def kernel_path(request) -> str:
    """Each kernel path (`vision.engine.kernels.ISAS`, `ref` first) in turn, forced for the test
    as VISION_KERNEL_ISA would force it; a path this CPU cannot execute is skipped, saying so."""
    from vision.engine import kernels

    if kernels.module() is None:
        pytest.fail("the kernels did not build here (g++ and ninja are required)")
    isa = request.param
    runnable = kernels.supported_isas()
    if isa not in runnable:
        _PATHS_SKIPPED.add(isa)
        pytest.skip(f"this CPU lacks the {isa} kernel path (it runs {', '.join(runnable)})")
    _PATHS_RAN.add(isa)
    with kernels.use_isa(isa):
        yield isa


_PATHS_RAN: set[str] = set()
_PATHS_SKIPPED: set[str] = set()


def pytest_terminal_summary(terminalreporter) -> None:
    """One line in the test log (scripts/test.sh's output): which kernel paths the engine tests
    ran on this CPU and which they skipped, and the path the engine itself chose here."""
    if not _PATHS_RAN and not _PATHS_SKIPPED:
        return
    from vision.engine import kernels

    order = [name for name in _kernel_paths()]
    ran = [name for name in order if name in _PATHS_RAN]
    skipped = [name for name in order if name in _PATHS_SKIPPED and name not in _PATHS_RAN]
    terminalreporter.write_line(
        f"engine kernel paths: ran {', '.join(ran) or 'none'}; skipped {', '.join(skipped) or 'none'}"
        f" (this CPU lacks them); the engine's own choice here: {kernels.isa()}"
    )
