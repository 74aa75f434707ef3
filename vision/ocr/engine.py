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

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

Point = tuple[float, float]
BBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in page pixels

# Pages larger than this (long side, pixels) are scaled down before OCR: PP-OCR's detector is
# trained on ~960-1600 px pages and its cost grows with area (~2 s for an A4 at 1240x1754 on two
# AVX2 cores). Boxes are mapped back to the original page.
MAX_SIDE = 2000
MIN_SCORE = 0.5  # RapidOCR's default: recognitions below this are dropped as noise


class OcrUnavailable(RuntimeError):
    """The OCR runtime or its bundled models are missing on this machine."""


@dataclass(frozen=True)
class OcrLine:
    text: str
    box: tuple[Point, Point, Point, Point]  # clockwise from top-left; a rotated quad on tilted pages
    bbox: BBox  # axis-aligned hull of `box`, what highlighters and geometry use
    confidence: float  # recogniser score, 0..1
    row: int = 0  # index of the visual row in reading order: lines on one row share it

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def center_y(self) -> float:
        return (self.bbox[1] + self.bbox[3]) / 2


@dataclass
class OcrResult:
    width: int  # of the page as given (boxes are in these pixels)
    height: int
    lines: list[OcrLine] = field(default_factory=list)  # reading order: rows top-down, each left-right
    elapsed_s: float = 0.0
    # Where the lines came from: "ocr" (this engine) or "text_layer" (a PDF page's own text,
    # vision/ocr/textlayer.py); `source_reason` says why a page with a text layer was OCR'd.
    source: str = "ocr"
    source_reason: str = ""

    @property
    def text(self) -> str:
        """The page as text: one line per visual row, cells of a row separated by two spaces."""
        rows: dict[int, list[str]] = {}
        for line in self.lines:
            rows.setdefault(line.row, []).append(line.text)
        return "\n".join("  ".join(parts) for _, parts in sorted(rows.items()))

    @property
    def mean_confidence(self) -> float:
        return sum(x.confidence for x in self.lines) / len(self.lines) if self.lines else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "elapsed_s": round(self.elapsed_s, 3),
            "source": self.source,
            "source_reason": self.source_reason,
            "text": self.text,
            "lines": [
                {
                    "text": line.text,
                    "box": [[round(x, 1), round(y, 1)] for x, y in line.box],
                    "bbox": [round(v, 1) for v in line.bbox],
                    "confidence": round(line.confidence, 4),
                    "row": line.row,
                }
                for line in self.lines
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OcrResult:
        lines = [
            OcrLine(
                text=x["text"],
                box=tuple(tuple(p) for p in x["box"]),  # type: ignore[arg-type]
                bbox=tuple(x["bbox"]),  # type: ignore[arg-type]
                confidence=x["confidence"],
                row=x.get("row", 0),
            )
            for x in data.get("lines", [])
        ]
        return cls(
            data["width"],
            data["height"],
            lines,
            data.get("elapsed_s", 0.0),
            data.get("source", "ocr"),
            data.get("source_reason", ""),
        )


def skew(lines: list[OcrLine]) -> float:
    """The page's tilt as a slope (dy/dx), the median over the top edges of wide lines."""
    slopes = sorted(
        (line.box[1][1] - line.box[0][1]) / (line.box[1][0] - line.box[0][0])
        for line in lines
        if line.box[1][0] - line.box[0][0] > 3 * max(line.height, 1.0)
    )
    return slopes[len(slopes) // 2] if slopes else 0.0


def order_lines(lines: list[OcrLine]) -> list[OcrLine]:
    """Reading order: group lines into visual rows, rows top-down, lines in a row left-right.

    Rows are found on deskewed coordinates: on a photo tilted by 2° a label at the left margin
    and its amount at the right margin of the same row differ by ~35 px in y, more than a line's
    height. A line joins the current row when it overlaps the row vertically by at least half of
    the smaller height; two separate text rows never overlap that much.
    """
    slope = skew(lines)

    def span(line: OcrLine) -> tuple[float, float]:
        shift = slope * (line.bbox[0] + line.bbox[2]) / 2
        return line.bbox[1] - shift, line.bbox[3] - shift

    rows: list[list[OcrLine]] = []
    row_span = (0.0, 0.0)
    for line in sorted(lines, key=lambda x: (sum(span(x)) / 2, x.bbox[0])):
        top, bottom = span(line)
        if rows:
            overlap = min(row_span[1], bottom) - max(row_span[0], top)
            if overlap >= 0.5 * min(bottom - top, row_span[1] - row_span[0]):
                rows[-1].append(line)
                row_span = (min(row_span[0], top), max(row_span[1], bottom))
                continue
        rows.append([line])
        row_span = (top, bottom)
    ordered = []
    for index, row in enumerate(rows):
        for line in sorted(row, key=lambda x: x.bbox[0]):
            ordered.append(OcrLine(line.text, line.box, line.bbox, line.confidence, index))
    return ordered


class OcrEngine:
    """RapidOCR with the models bundled in its wheel; build one per process (see `get_engine`)."""

    def __init__(self, *, threads: int = 0) -> None:
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise OcrUnavailable(f"rapidocr is not installed: {exc}") from exc
        models = Path(rapidocr.__file__).parent / "models"
        paths = {
            "Det.model_path": models / "PP-OCRv6_det_small.onnx",
            "Rec.model_path": models / "PP-OCRv6_rec_small.onnx",
            "Cls.model_path": models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        }
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise OcrUnavailable(f"bundled OCR models missing: {', '.join(missing)}")
        params: dict[str, Any] = {key: str(value) for key, value in paths.items()}
        params |= {
            "Global.log_level": "warning",
            "Global.text_score": MIN_SCORE,
            "Global.max_side_len": MAX_SIDE,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads if threads > 0 else -1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        self._ocr = RapidOCR(params=params)
        self._lock = threading.Lock()

    def read(self, image: Image.Image) -> OcrResult:
        import numpy as np

        started = time.perf_counter()
        page = ImageOps.exif_transpose(image).convert("RGB")
        array = np.asarray(page)[:, :, ::-1].copy()  # RapidOCR takes OpenCV's BGR order
        with self._lock:
            output = self._ocr(array)
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
            output = self._ocr.recognize_txt(arrays)
        texts = output.txts or ()
        return [(str(t).strip(), float(s)) for t, s in zip(texts, output.scores, strict=True)]


_engine: OcrEngine | None = None
_engine_lock = threading.Lock()


def get_engine() -> OcrEngine:
    """This process's OCR engine, built on first use (~1.5 s: three ONNX sessions)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = OcrEngine()
    return _engine


def ocr_image(image: Image.Image) -> OcrResult:
    """OCR one page: lines with text, quad and axis-aligned boxes, confidence, in reading order."""
    return get_engine().read(image)
