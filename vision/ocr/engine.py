"""Offline OCR: RapidOCR (PP-OCRv6 small det/rec + PP-OCRv4 cls) on onnxruntime.

Why this package and version: `rapidocr==3.10.0`'s wheel carries its default models (det, rec for
Chinese + English + Latin scripts, direction cls) and the rec model embeds its character table,
so nothing is fetched at first use; the older `rapidocr-onnxruntime` 1.4.x also ships models but
needs `opencv-python` (libGL) and is no longer maintained. We still pass the bundled model paths
explicitly, so a missing file is a clear error here and never a download attempt.

No Django. onnxruntime and rapidocr load only when the first page is read, so importing this
module from web code costs nothing. One engine per process, created lazily under a lock; calls
are serialised by a lock too (RapidOCR keeps per-call state on the instance).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

# The page types and the settings are defined apart; callers import them from here as well.
from vision.ocr.engine_settings import ENV as ENV
from vision.ocr.engine_settings import OcrSettings, quantized_model
from vision.ocr.lines import BBox as BBox
from vision.ocr.lines import OcrLine, OcrResult, order_lines

logger = logging.getLogger(__name__)

# Pages larger than this (long side, pixels) are scaled down before OCR: PP-OCR's detector is
# trained on ~960-1600 px pages and its cost grows with area (~2 s for an A4 at 1240x1754 on two
# AVX2 cores). Boxes are mapped back to the original page.
MAX_SIDE = 2000
MIN_SCORE = 0.5  # RapidOCR's default: recognitions below this are dropped as noise


class OcrUnavailable(RuntimeError):
    """The OCR runtime or its bundled models are missing on this machine."""


# With `classifier="doubt"`, a line whose recognition scores below this is checked for being upside down
# (direction classifier, then read again turned); a line read upright scores ~0.9-1.0.
DOUBT_SCORE = 0.8


class OcrEngine:
    """RapidOCR with the models bundled in its wheel; build one per process (see `get_ocr_engine`).

    Each stage runs through RapidOCR's own steps (resize, detection and crops, direction
    classifier, recognition, output filtering) so the texts are RapidOCR's; this class times
    them (`last_timings`), builds the ONNX Runtime sessions with its own thread settings, and
    applies the opt-in settings of `OcrSettings`.
    """

    def __init__(
        self,
        *,
        threads: int | None = None,
        spinning: bool | None = None,
        rec_batch: int | None = None,
        det_side: int | None = None,
        classifier: str | None = None,
        quantized: bool | None = None,
    ) -> None:
        try:
            import rapidocr
            from omegaconf import flag_override
            from rapidocr import RapidOCR
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise OcrUnavailable(f"rapidocr is not installed: {exc}") from exc
        self.config = OcrSettings.resolve(
            threads=threads,
            spinning=spinning,
            rec_batch=rec_batch,
            det_side=det_side,
            classifier=classifier,
            quantized=quantized,
        )
        models = Path(rapidocr.__file__).parent / "models"
        paths = {
            "Det": models / "PP-OCRv6_det_small.onnx",
            "Rec": models / "PP-OCRv6_rec_small.onnx",
            "Cls": models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        }
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise OcrUnavailable(f"bundled OCR models missing: {', '.join(missing)}")
        if self.config.quantized:
            paths["Det"], paths["Rec"] = quantized_model(paths["Det"]), quantized_model(paths["Rec"])
        params: dict[str, Any] = {f"{key}.model_path": str(value) for key, value in paths.items()}
        params |= {
            "Global.log_level": "warning",
            "Global.text_score": MIN_SCORE,
            "Global.max_side_len": MAX_SIDE,
            "Rec.rec_batch_num": self.config.rec_batch,
            "EngineConfig.onnxruntime.intra_op_num_threads": self.config.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        if self.config.det_side:
            params |= {"Det.limit_type": "max", "Det.limit_side_len": self.config.det_side}
        self._ocr = RapidOCR(params=params)
        # RapidOCR takes a ready session per model (`<section>.session`); ours carry the thread
        # settings RapidOCR's own SessionOptions cannot express (spinning). Built on first use.
        self._paths = paths
        self._flag_override = flag_override
        self._sessions_ready = False
        self._lock = threading.Lock()
        self.last_timings: dict[str, float] = {}
        # The worker builds its engine at start, so this line is in its log.
        logger.info("OCR engine settings: %s", " ".join(f"{k}={v}" for k, v in self.settings.items()))

    @property
    def settings(self) -> dict[str, Any]:
        """What this engine runs with: threads, spinning, batch, detector size, classifier, int8."""
        return self.config.to_dict()

    def _session_options(self):
        from onnxruntime import GraphOptimizationLevel, SessionOptions

        options = SessionOptions()
        options.log_severity_level = 4
        options.enable_cpu_mem_arena = False
        options.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        spin = "1" if self.config.spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return options

    def _ensure_sessions(self) -> None:
        if self._sessions_ready:
            return
        from onnxruntime import InferenceSession

        providers = [("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]
        for section, path in self._paths.items():
            cfg = self._ocr.cfg[section]
            with self._flag_override(cfg, "allow_objects", True):
                cfg.session = InferenceSession(
                    str(path), sess_options=self._session_options(), providers=providers
                )
        self._sessions_ready = True

    def _run(self, array: Any) -> Any:
        """RapidOCR's pipeline step by step (rapidocr.main.RapidOCR.__call__), timed."""
        from rapidocr.ch_ppocr_cls import TextClsOutput
        from rapidocr.main import RapidOCRError, RapidOCROutput

        ocr = self._ocr
        timings: dict[str, float] = {}
        mark = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + now - mark
            mark = now

        image, op_record = ocr.preprocess_img(array)
        lap("preprocess")
        try:
            crops, det_res = ocr.detect_and_crop(image, op_record)
        except RapidOCRError:  # no text found
            lap("det")
            self.last_timings = timings
            return RapidOCROutput()
        lap("det")
        cls_res = TextClsOutput()
        if self.config.classifier == "always":
            upright, cls_res = ocr.cls_and_rotate(crops)
            lap("cls")
            rec_res = ocr.recognize_txt(upright)
            lap("rec")
        else:
            rec_res = ocr.recognize_txt(crops)
            lap("rec")
            self._turn_doubtful(crops, rec_res, lap)
        output = ocr.build_final_output(array, det_res, cls_res, rec_res, crops, op_record)
        lap("postprocess")
        self.last_timings = {k: round(v, 4) for k, v in timings.items()}
        return output

    def _turn_doubtful(self, crops: list[Any], rec_res: Any, lap) -> None:
        """Lines read with a low score that the direction classifier finds upside down are read
        again turned; the better reading of the two stays."""
        doubtful = [i for i, score in enumerate(rec_res.scores) if score < DOUBT_SCORE]
        if not doubtful:
            return
        cls_model = self._ocr._load_cls_model()
        turned = cls_model([crops[i] for i in doubtful])  # turns the crops it finds at 180°
        flipped = [
            (i, image)
            for i, image, (label, score) in zip(doubtful, turned.img_list, turned.cls_res, strict=True)
            if "180" in label and score > cls_model.cls_thresh
        ]
        lap("cls")
        if not flipped:
            return
        again = self._ocr.recognize_txt([image for _, image in flipped])
        txts, scores = list(rec_res.txts), list(rec_res.scores)
        for (i, _), text, score in zip(flipped, again.txts, again.scores, strict=True):
            if score > scores[i]:
                txts[i], scores[i] = text, score
        rec_res.txts, rec_res.scores = tuple(txts), tuple(scores)
        lap("rec")

    def read(self, image: Image.Image) -> OcrResult:
        import numpy as np

        started = time.perf_counter()
        page = ImageOps.exif_transpose(image).convert("RGB")
        array = np.asarray(page)[:, :, ::-1].copy()  # RapidOCR takes OpenCV's BGR order
        with self._lock:
            self._ensure_sessions()
            output = self._run(array)
        lines = []
        if output.boxes is not None and output.txts is not None:
            for quad, text, score in zip(output.boxes, output.txts, output.scores, strict=True):
                text = text.strip()
                if not text:
                    continue
                points = tuple((float(x), float(y)) for x, y in quad.tolist())
                xs = [p[0] for p in points]
                ys = [p[1] for p in points]
                bbox = (
                    max(0.0, min(xs)),
                    max(0.0, min(ys)),
                    min(page.width, max(xs)),
                    min(page.height, max(ys)),
                )
                lines.append(OcrLine(text, points, bbox, float(score)))  # type: ignore[arg-type]
        return OcrResult(page.width, page.height, order_lines(lines), time.perf_counter() - started)

    def recognize(self, crops: list[Image.Image]) -> list[tuple[str, float]]:
        """Text and score of each image, each read as one line by the recogniser alone (no
        detection, no direction classifier): ~10-30 ms a line, for checking a known text."""
        import numpy as np

        if not crops:
            return []
        arrays = [np.asarray(c.convert("RGB"))[:, :, ::-1].copy() for c in crops]
        with self._lock:
            self._ensure_sessions()
            output = self._ocr.recognize_txt(arrays)
        texts = output.txts or ()
        return [(str(t).strip(), float(s)) for t, s in zip(texts, output.scores, strict=True)]


_engine: OcrEngine | None = None
_engine_lock = threading.Lock()


def get_ocr_engine() -> OcrEngine:
    """This process's OCR engine, built on first use (~1.5 s: three ONNX sessions)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = OcrEngine()
    return _engine


def ocr_image(image: Image.Image) -> OcrResult:
    """OCR one page: lines with text, quad and axis-aligned boxes, confidence, in reading order."""
    return get_ocr_engine().read(image)
