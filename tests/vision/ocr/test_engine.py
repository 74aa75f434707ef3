"""OCR engine on rendered pages of known text (English and Chinese): lines, boxes, confidence,
reading order and the character error rate."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.vision.ocr.invoices import text_page
from vision.ocr.engine import OcrLine, OcrResult, order_lines

EN_LINES = [
    "Invoice No: INV-2024-0042",
    "Date: 15 March 2024",
    "Bill To: Globex Corporation",
    "Total due: 1,481.40 EUR",
    "Thank you for your business",
    "Payment within 30 days",
]
ZH_LINES = [
    "发票号码：12345678",
    "开票日期：2024年03月15日",
    "购买方名称：北京星辰科技有限公司",
    "价税合计：¥1,481.40",
    "销售方：上海远航贸易有限公司",
    "备注：货物已验收",
]
# Printed text at 28 px on a clean page is the easy case for PP-OCR; what we measured is 0-1%
# (the usual slips are a dropped space or a full-width colon read as ASCII, not counted: CER is
# over the text without spaces and with full-width punctuation folded). 3% allows one or two
# confusions per page, while a broken pipeline (BGR/RGB swap, wrong dictionary, lost lines) is
# far above it.
CER_BOUND = 0.03


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def fold(text: str) -> str:
    return "".join(text.translate(str.maketrans("：，（）", ":,()")).split())


def cer(reference: str, hypothesis: str) -> float:
    return levenshtein(fold(reference), fold(hypothesis)) / max(1, len(fold(reference)))


@pytest.fixture(scope="module", params=["en", "zh"])
def page(request):
    from vision.ocr.engine import ocr_image

    lines = EN_LINES if request.param == "en" else ZH_LINES
    image, drawn = text_page(lines, "latin" if request.param == "en" else "cjk", columns=2)
    return drawn, ocr_image(image)


def test_lines_boxes_and_confidence(page) -> None:
    drawn, result = page
    assert len(result.lines) == len(drawn)
    for (text, (x0, y0, x1, y1)), line in zip(drawn, result.lines, strict=True):
        cx, cy = (line.bbox[0] + line.bbox[2]) / 2, (line.bbox[1] + line.bbox[3]) / 2
        assert x0 - 2 <= cx <= x1 + 2 and y0 - 2 <= cy <= y1 + 2, (text, line)
        # the OCR box covers the drawn text (detector boxes are padded by a few pixels)
        assert line.bbox[0] <= x0 + 6 and line.bbox[2] >= x1 - 6, (text, line.bbox, (x0, x1))
        assert len(line.box) == 4
        assert 0.8 <= line.confidence <= 1.0, line


def test_reading_order_is_rows_then_left_to_right(page) -> None:
    drawn, result = page
    # text_page(columns=2) alternates left and right cells: reading order interleaves columns
    assert [cer(text, line.text) < 0.2 for (text, _), line in zip(drawn, result.lines, strict=True)] == [
        True
    ] * len(drawn)
    assert [line.row for line in result.lines] == [i // 2 for i in range(len(drawn))]


def test_character_error_rate_within_bound(page) -> None:
    drawn, result = page
    reference = "\n".join(text for text, _ in drawn)
    rate = cer(reference, "\n".join(line.text for line in result.lines))
    print(f"CER {rate:.4f}")
    assert rate <= CER_BOUND


def test_result_round_trips_through_json(page) -> None:
    _, result = page
    again = OcrResult.from_dict(result.to_dict())
    assert [x.text for x in again.lines] == [x.text for x in result.lines]
    assert again.text == result.text


def _line(text: str, x0: float, y0: float, x1: float, y1: float, slope: float = 0.0) -> OcrLine:
    dy = slope * (x1 - x0)
    box = ((x0, y0), (x1, y0 + dy), (x1, y1 + dy), (x0, y1))
    return OcrLine(text, box, (x0, min(y0, y0 + dy), x1, max(y1, y1 + dy)), 0.99)


def test_order_lines_keeps_a_tilted_row_together() -> None:
    """GIVEN a page tilted ~2° (35 px over 1000 px) WHEN ordering THEN label and amount share a row."""
    slope = 0.035
    lines = [
        _line("Total:", 60, 800, 400, 830, slope),
        _line("1,481.40", 900, 800 + 840 * slope, 1040, 830 + 840 * slope, slope),
        _line("Subtotal:", 60, 740, 400, 770, slope),
        _line("1,234.50", 900, 740 + 840 * slope, 1040, 770 + 840 * slope, slope),
    ]
    ordered = order_lines(lines)
    assert [x.text for x in ordered] == ["Subtotal:", "1,234.50", "Total:", "1,481.40"]
    assert [x.row for x in ordered] == [0, 0, 1, 1]


def test_importing_the_engine_module_loads_no_runtime() -> None:
    """Web code may import vision.ocr; onnxruntime and rapidocr load only when a page is read."""
    code = (
        "import sys, vision.ocr.engine, vision.ocr.invoice, vision.ocr.vlm;"
        "print(sorted(m for m in ('onnxruntime', 'rapidocr', 'cv2', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
