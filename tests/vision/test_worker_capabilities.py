"""What a worker reports it can run (its heartbeat's `capabilities`), without a worker process."""

from __future__ import annotations

import pytest

from vision import worker
from vision.capabilities import capabilities_summary, deployment_status, summary_text, tasks_availability


@pytest.fixture
def holder(monkeypatch):
    fresh = worker._EngineHolder()
    monkeypatch.setattr(worker, "_holder", fresh)
    return fresh


def test_vision_model_none_is_an_ocr_only_worker(settings) -> None:
    settings.VISION_ENGINE, settings.VISION_MODEL = "on", "None"
    assert worker.vlm_disabled_reason() == "VISION_MODEL=none: an OCR-only deployment, no model is loaded"
    settings.VISION_MODEL = "Qwen/Qwen3-VL-2B-Instruct"
    assert worker.vlm_disabled_reason() is None
    settings.VISION_ENGINE = "off"
    assert "VISION_ENGINE=off" in worker.vlm_disabled_reason()


def test_vlm_capability_follows_the_engine_state(holder) -> None:
    holder.set_status(state="off", error="VISION_MODEL=none: an OCR-only deployment, no model is loaded")
    assert worker.vlm_capability()["state"] == "unavailable"
    assert worker.vlm_capability()["reason"].startswith("VISION_MODEL=none")
    holder.set_status(state="error", error="ModelNotFound: model folder /x does not exist")
    assert worker.vlm_capability() == {
        "state": "unavailable",
        "reason": "ModelNotFound: model folder /x does not exist",
        "model": worker.settings.VISION_MODEL,
    }


def test_a_download_in_progress_shows_in_the_loading_reason(holder, settings, tmp_path, monkeypatch) -> None:
    """GIVEN a worker loading a hub model whose blobs are arriving in the Hugging Face cache THEN
    its VLM capability says how much has been downloaded."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    settings.VISION_MODEL = "Qwen/Qwen3-VL-2B-Instruct"
    holder.set_status(state="loading")
    assert worker.vlm_capability() == {
        "state": "loading",
        "reason": "the model is loading",
        "model": settings.VISION_MODEL,
    }

    blobs = tmp_path / "models--Qwen--Qwen3-VL-2B-Instruct" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "a").write_bytes(b"x" * 1_000_000)
    (blobs / "b.incomplete").write_bytes(b"x" * 250_000_000)

    assert worker.vlm_capability()["reason"] == "the model is loading (0.25 GB downloaded so far)"


def test_ocr_capability_reports_a_failed_load(monkeypatch) -> None:
    fresh = worker._OcrHolder()
    monkeypatch.setattr(worker, "_ocr", fresh)
    assert worker.ocr_capability()["state"] == "loading"

    def broken():
        raise RuntimeError("bundled OCR models missing")

    monkeypatch.setattr("vision.ocr.engine.get_ocr_engine", broken)
    worker._ocr_load()

    assert worker.ocr_capability() == {
        "state": "unavailable",
        "reason": "RuntimeError: bundled OCR models missing",
    }


def _beat(ocr: str, vlm: str, reason: str = "") -> dict:
    return {
        "hostname": f"w-{ocr}-{vlm}",
        "engine": {"state": "?"},
        "capabilities": {"ocr": {"state": ocr, "reason": ""}, "vlm": {"state": vlm, "reason": reason}},
    }


def test_fleet_summary_and_what_each_task_can_do() -> None:
    beats = [
        _beat("ready", "unavailable", "VISION_MODEL=none"),
        _beat("ready", "unavailable", "ModelNotFound: x"),
    ]
    summary = capabilities_summary(beats)

    assert deployment_status(summary) == "degraded"
    assert summary_text(summary) == "OCR ready, VLM unavailable: VISION_MODEL=none; ModelNotFound: x"
    by_task = {item.task: item for item in tasks_availability(summary, ["ocr", "invoice", "caption"])}
    assert by_task["ocr"].runs and not by_task["ocr"].partial
    assert by_task["invoice"].runs and by_task["invoice"].partial
    assert not by_task["caption"].runs and by_task["caption"].reason == "VISION_MODEL=none; ModelNotFound: x"

    summary = capabilities_summary([*beats, _beat("ready", "loading", "the model is loading")])
    assert summary["vlm"].state == "loading" and summary["vlm"].coming
    summary = capabilities_summary([*beats, _beat("ready", "ready")])
    assert deployment_status(summary) == "ok" and summary_text(summary) == "OCR ready, VLM ready"
    assert deployment_status(capabilities_summary([])) == "unavailable"
    assert capabilities_summary([])["ocr"].reason == "no worker is online"
