"""The OCR engine's settings: resolved from arguments and environment, reported (`settings`, the
log line the worker writes at start), applied to the ONNX Runtime sessions, and the opt-in
direction-classifier mode reading an upside-down page."""

from __future__ import annotations

import logging

import pytest

from tests.vision.ocr.invoices import text_page
from vision.ocr import engine as ocr_engine
from vision.ocr.engine import OcrEngine, OcrSettings

LINES = ["Invoice No: INV-2024-0042", "Total due: 1,481.40 EUR", "Payment within 30 days"]


@pytest.fixture
def no_ocr_env(monkeypatch):
    for name in ocr_engine.ENV.values():
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_keep_rapidocrs_pipeline(no_ocr_env) -> None:
    from vision.engine.cpuinfo import physical_cores

    got = OcrSettings.resolve()
    assert got == OcrSettings(threads=physical_cores(), spinning=False, rec_batch=6, det_side=0)
    assert got.classifier == "always" and got.quantized is False


def test_environment_then_arguments(no_ocr_env) -> None:
    no_ocr_env.setenv("OCR_THREADS", "1")
    no_ocr_env.setenv("OCR_DET_SIDE", "1280")
    no_ocr_env.setenv("OCR_CLASSIFIER", "doubt")
    no_ocr_env.setenv("OCR_SPINNING", "yes")
    got = OcrSettings.resolve(det_side=960)
    assert (got.threads, got.det_side, got.classifier, got.spinning) == (1, 960, "doubt", True)
    no_ocr_env.setenv("OCR_CLASSIFIER", "sometimes")
    with pytest.raises(ValueError, match="sometimes"):
        OcrSettings.resolve()


def test_engine_reports_and_logs_its_settings(no_ocr_env, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="vision.ocr.engine"):
        engine = OcrEngine(threads=1, rec_batch=8, det_side=1280)
    assert engine.settings == {
        "threads": 1,
        "spinning": False,
        "rec_batch": 8,
        "det_side": 1280,
        "classifier": "always",
        "quantized": False,
        "inter_op_threads": 1,
    }
    logged = [r.getMessage() for r in caplog.records if r.name == "vision.ocr.engine"]
    assert any("threads=1" in m and "rec_batch=8" in m and "det_side=1280" in m for m in logged), logged


def test_worker_start_logs_the_ocr_settings(no_ocr_env, monkeypatch, caplog) -> None:
    """The worker builds its OCR engine in a thread at start; that engine's settings are logged."""
    from vision import worker

    monkeypatch.setattr(ocr_engine, "_engine", None)
    monkeypatch.setattr(worker, "_ocr", worker._OcrHolder())
    no_ocr_env.setenv("OCR_THREADS", "1")
    with caplog.at_level(logging.INFO):
        worker._ocr_load()
    assert worker.ocr_capability()["state"] == "ready"
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("OCR engine settings:") and "threads=1" in m for m in logged), logged


def test_sessions_run_with_the_settings(no_ocr_env) -> None:
    engine = OcrEngine(threads=1)
    image, _ = text_page(LINES, "latin")
    result = engine.read(image)
    assert [line.text for line in result.lines] == LINES
    ocr = engine._ocr
    for model in (ocr.text_det, ocr.text_cls, ocr.text_rec):
        options = model.session.session.get_session_options()
        assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert {"det", "cls", "rec"} <= set(engine.last_timings)


@pytest.mark.parametrize("classifier", ["always", "doubt"])
def test_an_upside_down_page_is_read_in_both_classifier_modes(no_ocr_env, classifier) -> None:
    image, _ = text_page(LINES, "latin")
    engine = OcrEngine(threads=1, classifier=classifier)
    result = engine.read(image.rotate(180))
    assert sorted(line.text for line in result.lines) == sorted(LINES)
