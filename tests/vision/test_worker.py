"""Worker glue without a worker process: engine lifecycle and status reporting."""

import sys
import types
from dataclasses import dataclass

import pytest

from vision import worker


@pytest.fixture
def holder(monkeypatch):
    fresh = worker._EngineHolder()
    monkeypatch.setattr(worker, "_holder", fresh)
    return fresh


@dataclass
class _Status:
    state: str

    def to_dict(self) -> dict:
        return {"state": self.state, "model": "fake"}


class _FakeEngine:
    def __init__(self, config) -> None:
        self.config = config
        self.started = False
        self.state = "loading"

    def start(self) -> None:
        self.started = True

    def status(self) -> _Status:
        return _Status(self.state)

    def shutdown(self) -> None:
        self.state = "stopped"


@dataclass
class _FakeConfig:
    model: str
    dtype: str
    threads: int
    max_batch_size: int
    kv_cache_mb: int


def _fake_engine_module(monkeypatch) -> None:
    module = types.ModuleType("vision.engine")
    module.Engine = _FakeEngine
    module.EngineConfig = _FakeConfig
    monkeypatch.setitem(sys.modules, "vision.engine", module)


def test_get_vision_engine_before_load_raises(holder):
    with pytest.raises(worker.VisionEngineNotReady, match="starting"):
        worker.get_vision_engine()


def test_engine_load_passes_settings_and_reports_engine_status(holder, monkeypatch, settings):
    settings.VISION_MODEL = "/models/tiny"
    settings.VISION_DTYPE = "lm=int8,vision=bf16"
    settings.VISION_THREADS = 3
    settings.VISION_MAX_BATCH = 5
    settings.VISION_KV_CACHE_MB = 64
    _fake_engine_module(monkeypatch)

    worker._engine_load()

    engine = holder.engine()
    assert engine.started
    assert engine.config == _FakeConfig("/models/tiny", "lm=int8,vision=bf16", 3, 5, 64)
    assert worker.engine_status() == {"state": "loading", "model": "fake"}
    with pytest.raises(worker.VisionEngineNotReady):
        worker.get_vision_engine()
    engine.state = "ready"
    assert worker.get_vision_engine() is engine


def test_engine_import_failure_is_reported_not_raised(holder, monkeypatch):
    monkeypatch.setitem(sys.modules, "vision.engine", None)  # makes the import raise ImportError

    worker._engine_load()

    status = worker.engine_status()
    assert status["state"] == "error"
    assert status["error"].startswith("ModuleNotFoundError")
    with pytest.raises(worker.VisionEngineNotReady, match="error"):
        worker.get_vision_engine()


def test_engine_load_failure_is_reported(holder, monkeypatch):
    _fake_engine_module(monkeypatch)

    def explode(self):
        raise FileNotFoundError("no config.json in /models/missing")

    monkeypatch.setattr(_FakeEngine, "start", explode)
    worker._engine_load()

    assert worker.engine_status()["state"] == "error"
    assert "no config.json" in worker.engine_status()["error"]
