"""Born-digital PDF pages are read from their text layer (vision/ocr/textlayer.py), not OCR'd:
lines, boxes and rows as OCR gives them, the page's source recorded; scans, invisible text layers
that disagree with the pixels, and glyphs without unicode go to OCR. The PDFs are written here
(tests/vision/ocr/pdfgen.py: pdfium text objects in DejaVu) with known words at known places.
Generated invoices as born-digital PDFs, through the reader, an invoice job and the `extract`
command: test_textlayer_invoices.py."""

from __future__ import annotations

import difflib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.vision.ocr.pdfgen import FONT, Page, Text, draw_page, make_pdf, render
from vision.ocr.engine import OcrResult
from vision.ocr.textlayer import SOURCE_OCR, SOURCE_TEXT_LAYER, page_texts, read_page, read_pdf_pages

# (x, y, text, size, bold): rows 60+ px apart; on three rows a label and its amount far apart.
WORDS = [
    (100, 100, "Invoice number INV-2024-4202", 32, True),
    (100, 220, "Subtotal", 24, False),
    (900, 220, "1,000.00", 24, False),
    (100, 290, "Tax 19 %", 24, False),
    (900, 290, "190.00", 24, False),
    (100, 360, "Total due", 24, True),
    (880, 360, "1,190.00 EUR", 24, True),
    (100, 470, "Typography, quickly judged", 40, False),
]
ROWS = [
    ["Invoice number INV-2024-4202"],
    ["Subtotal", "1,000.00"],
    ["Tax 19 %", "190.00"],
    ["Total due", "1,190.00 EUR"],
    ["Typography, quickly judged"],
]
# What an invisible layer that belongs to another document says, at the same places.
OTHER = [
    "Weather report Monday",
    "Sunny",
    "spells",
    "Rain",
    "later",
    "Wind from",
    "the north west",
    "Humidity, fairly high",
]


def _page(words=WORDS, texts=None, **kwargs) -> Page:
    page = Page(**kwargs)
    for (x, y, _, size, bold), text in zip(words, texts or [w[2] for w in words], strict=True):
        page.text(x, y, text, size, bold)
    return page


def _read(data: bytes) -> tuple[OcrResult, Image.Image]:
    image = render(data)[0]
    return read_pdf_pages(data, {1: image})[1], image


def _rows(result: OcrResult) -> list[list[str]]:
    rows: dict[int, list[str]] = {}
    for line in result.lines:
        rows.setdefault(line.row, []).append(line.text)
    return [rows[key] for key in sorted(rows)]


@pytest.fixture(scope="module")
def born() -> tuple[bytes, OcrResult, Image.Image]:
    data = make_pdf([_page()])
    result, image = _read(data)
    return data, result, image


def test_a_born_digital_page_is_read_from_its_text_layer_in_rows_and_cells(born) -> None:
    _, result, image = born
    assert result.source == SOURCE_TEXT_LAYER and result.source_reason == ""
    assert (result.width, result.height) == image.size
    assert _rows(result) == ROWS  # one cell per label and per amount, words of a cell joined
    assert [line.row for line in result.lines] == sorted(line.row for line in result.lines)
    assert all(line.confidence == 1.0 for line in result.lines)
    again = OcrResult.from_dict(result.to_dict())
    assert result.to_dict()["source"] == again.source == SOURCE_TEXT_LAYER
    assert again.text == result.text


def _ink(image: Image.Image, window: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    pixels = np.asarray(image.convert("L").crop(window)) < 128
    ys, xs = np.nonzero(pixels)
    assert len(xs), f"no ink in {window}"
    return window[0] + xs.min(), window[1] + ys.min(), window[0] + xs.max() + 1, window[1] + ys.max() + 1


def _assert_boxes_on_ink(result: OcrResult, image: Image.Image) -> None:
    cells = {line.text: line.bbox for line in result.lines}
    for x, y, text, size, bold in WORDS:
        width = ImageFont.truetype(FONT, size).getlength(text) * (1.1 if bold else 1.0)
        ink = _ink(image, (x - 15, y - 12, int(x + width + 25), int(y + size * 1.35)))
        x0, y0, x1, y1 = cells[text]
        # the ink inside the box (2 px for anti-aliasing), the box no wider than the ink by more
        # than a glyph's side bearing (the box spans the glyphs' advances): 3-6 px here
        assert x0 <= ink[0] + 2 and x1 >= ink[2] - 2 and y0 <= ink[1] + 2 and y1 >= ink[3] - 2, (
            text,
            cells[text],
            ink,
        )
        slack = max(3.0, 0.15 * size)
        assert ink[0] - x0 <= slack and x1 - ink[2] <= slack, (text, cells[text], ink)
        assert y1 - y0 <= 1.4 * size, (text, cells[text])


def test_text_layer_boxes_sit_where_the_words_render(born) -> None:
    """Each cell's box holds its words' ink on the rendered page and is no wider than the ink by
    more than a side bearing (3-6 px), no taller than the font's line."""
    _, result, image = born
    _assert_boxes_on_ink(result, image)


def test_a_page_stored_rotated_maps_its_text_onto_the_displayed_image() -> None:
    """A landscape page stored portrait with /Rotate 90 and its content turned back: the boxes
    land on the rendered (displayed) image, the rows read left to right."""
    page = _page(size=(1754, 1241), rotate=True)
    result, image = _read(make_pdf([page]))
    assert image.size == (1754, 1241) and result.source == SOURCE_TEXT_LAYER, result.source_reason
    assert _rows(result) == ROWS
    _assert_boxes_on_ink(result, image)


def test_sideways_text_is_left_out_and_a_sideways_page_is_ocrd() -> None:
    page = _page()
    page.texts.append(Text(40, 1500, "Printed on recycled paper", 20, vertical=True))  # a margin note
    result, _ = _read(make_pdf([page]))
    assert result.source == SOURCE_TEXT_LAYER and _rows(result) == ROWS  # no letters of the note
    sideways = Page(texts=[Text(200 + 60 * i, 1400, w[2], 30, vertical=True) for i, w in enumerate(WORDS)])
    result, _ = _read(make_pdf([sideways]))
    assert result.source == SOURCE_OCR and "sideways" in result.source_reason


def test_text_layer_rows_are_the_rows_ocr_finds_on_the_same_page(born) -> None:
    """The invoice reader's row/column logic sees the same structure either way: the same rows,
    the same cells in each, the same texts (up to OCR's reading)."""
    from vision.ocr.engine import ocr_image

    _, result, image = born
    ocr = ocr_image(image)
    assert ocr.source == SOURCE_OCR
    layer_rows, ocr_rows = _rows(result), _rows(ocr)
    assert [len(r) for r in layer_rows] == [len(r) for r in ocr_rows], (layer_rows, ocr_rows)
    for mine, theirs in zip(layer_rows, ocr_rows, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert difflib.SequenceMatcher(None, a.replace(" ", ""), b.replace(" ", "")).ratio() >= 0.85, (
                a,
                b,
            )
    for line, other in zip(result.lines, ocr.lines, strict=True):  # boxes agree with OCR's too
        assert all(abs(p - q) <= 12 for p, q in zip(line.bbox, other.bbox, strict=True)), (line, other)


def _tall_bold_font(data: bytes) -> bytes:
    """The PDF with its bold font's descriptor claiming an ascent and descent of a whole em each
    and a font box of ten (as some producers' fonts do): pdfium's loose boxes for its glyphs are
    then two ems tall. Same byte length, so the cross-reference offsets stay valid."""
    import re

    found = re.search(
        rb"/Ascent \d+/CapHeight \d+/Descent -\d+/Flags \d+/FontBBox\[[^\]]*\]/FontFile2 \d+ 0 R /FontName/DejaVuSans-Bold",
        data,
    )
    assert found, "pdfium wrote the font descriptor differently"
    part = found.group(0)
    part = re.sub(rb"/Ascent \d+", b"/Ascent 999", part)
    part = re.sub(rb"/Descent -\d+", b"/Descent -999", part)
    part = re.sub(
        rb"FontBBox\[ (-?\d+) -(\d+) (\d+) (\d+)\]",
        lambda m: b"FontBBox[ %s -%s %s %s]" % (m[1], b"9" * len(m[2]), m[3], b"9" * len(m[4])),
        part,
    )
    assert len(part) == len(found.group(0))
    return data[: found.start()] + part + data[found.end() :]


def test_a_glyph_with_tall_font_metrics_does_not_chain_two_rows() -> None:
    """A bullet in a font whose metrics span two ems sits on the middle of three lines: boxes from
    the baseline and the font size keep the rows apart (the font's own box would overlap the
    next line by more than half and merge it into the bullet's row, words interleaved)."""
    page = Page()
    page.text(100, 100, "Pour vous informer", 24)
    page.text(100, 128, "•", 24, bold=True)
    page.text(120, 128, "Téléphone gratuit", 24)
    page.text(100, 156, "Courrier postal", 24)
    data = _tall_bold_font(make_pdf([page]))
    image = render(data)[0]
    texts = page_texts(data, {1: image.size})[1]
    bullet = next(c for c in texts.chars if c.text == "•")
    assert bullet.bbox[3] - bullet.bbox[1] <= 1.1 * 24
    result = read_page(image, texts)
    assert _rows(result) == [["Pour vous informer"], ["• Téléphone gratuit"], ["Courrier postal"]]


def test_a_scanned_pdf_without_text_is_ocrd() -> None:
    data = make_pdf([Page(image=draw_page(_page()))])
    result, _ = _read(data)
    assert result.source == SOURCE_OCR and "no text layer" in result.source_reason
    assert "INV-2024-4202" in result.text and result.to_dict()["source"] == SOURCE_OCR


def test_an_invisible_text_layer_that_agrees_with_the_scan_is_used() -> None:
    """A scan with an OCR tool's invisible text (render mode 3) over it: its words are the
    pixels' words, so the page is read from it."""
    scan = draw_page(_page())
    data = make_pdf([_page(image=scan, invisible=True)])
    texts = page_texts(data, {1: render(data)[0].size})[1]
    assert texts.chars and all(c.invisible for c in texts.chars if c.text)  # really invisible
    result, _ = _read(data)
    assert result.source == SOURCE_TEXT_LAYER, result.source_reason
    assert _rows(result) == ROWS


def test_an_invisible_text_layer_that_disagrees_with_the_pixels_is_not_used() -> None:
    scan = draw_page(_page())
    data = make_pdf([_page(texts=OTHER, image=scan, invisible=True)])
    result, _ = _read(data)
    assert result.source == SOURCE_OCR and "disagrees" in result.source_reason
    assert "INV-2024-4202" in result.text and "Weather" not in result.text


def test_glyphs_without_unicode_mapping_fall_back_to_ocr() -> None:
    """The same page with its font's ToUnicode map removed: pdfium returns glyph ids as text
    (`,QYRLFH` for `Invoice`) and flags them unmapped; the page is OCR'd."""
    data = make_pdf([_page()])
    assert b"/ToUnicode" in data
    garbled = data.replace(b"/ToUnicode", b"/ToUnicodX")  # same length: offsets stay valid
    texts = page_texts(garbled, {1: render(garbled)[0].size})[1]
    assert "Invoice" not in "".join(c.text for c in texts.chars) and texts.unmapped_share > 0.5
    result, _ = _read(garbled)
    assert result.source == SOURCE_OCR and "unicode mapping" in result.source_reason
    assert "INV-2024-4202" in result.text


def _lying_unicode_map(data: bytes) -> bytes:
    """The PDF with its font's ToUnicode map shifted by one character (I -> J, space -> !): the
    page renders the same, its text layer reads `Jowpjdf!ovncfs`. Re-saved by pdfium, so the
    cross-reference table is valid again."""
    import io
    import re
    import zlib

    import pypdfium2

    number = re.search(rb"/ToUnicode (\d+) 0 R", data)[1]
    head = re.compile(rb"<</Filter/FlateDecode/Length (\d+)>>stream\r\n")
    found = head.search(data, data.find(b"\n" + number + b" 0 obj"))
    start, end = found.end(), found.end() + int(found[1])
    lines = []
    for line in zlib.decompress(data[start:end]).decode("latin-1").split("\n"):
        # a range of glyphs mapped from an ASCII character onwards: start one character later
        shifted = re.sub(
            r"^(<\w{4}> <\w{4}> )<00([2-7][0-9A-Fa-f])>$", lambda m: f"{m[1]}<{int(m[2], 16) + 1:04X}>", line
        )
        lines.append(shifted)
    stream = zlib.compress("\n".join(lines).encode("latin-1"))
    lying = (
        data[: found.start()]
        + b"<</Filter/FlateDecode/Length %d>>stream\r\n" % len(stream)
        + stream
        + data[end:]
    )
    pdf = pypdfium2.PdfDocument(lying)
    try:
        out = io.BytesIO()
        pdf.save(out)
    finally:
        pdf.close()
    return out.getvalue()


def test_a_font_whose_unicode_map_lies_is_caught_by_the_sample_and_ocrd() -> None:
    """Every glyph has a unicode mapping, but a wrong one: only the pixels can tell."""
    data = _lying_unicode_map(make_pdf([_page()]))
    texts = page_texts(data, {1: render(data)[0].size})[1]
    layer = "".join(c.text for c in texts.chars)
    assert "Jowpjdf" in layer and texts.unmapped_share == 0.0  # garbage no glyph check can see
    result, _ = _read(data)
    assert result.source == SOURCE_OCR and "disagrees" in result.source_reason
    assert "INV-2024-4202" in result.text


def test_a_picture_of_text_on_a_text_page_is_ocrd_into_the_page() -> None:
    picture = Image.new("RGB", (900, 200), "white")  # 8 % of the page
    draw = ImageDraw.Draw(picture)
    draw.text((20, 60), "Pasted table REF-7781", font=ImageFont.truetype(FONT, 34), fill="black")
    page = _page(pictures=[(picture, (100, 900))])
    result, _ = _read(make_pdf([page]))
    assert result.source == SOURCE_TEXT_LAYER and "1 image area" in result.source_reason
    pasted = [line for line in result.lines if "REF-7781" in line.text]
    assert pasted and pasted[0].confidence < 1.0  # an OCR line, placed where the picture is
    x0, y0, x1, y1 = pasted[0].bbox
    assert 100 <= x0 < x1 <= 1000 and 900 <= y0 < y1 <= 1100
    assert _rows(result)[: len(ROWS)] == ROWS


def test_an_annotations_text_is_read_with_the_page() -> None:
    """A FreeText annotation (like a filled form field or a stamp) draws the amount on the page
    but is not page content: the page is read with its annotations merged in, so the amount is
    in the reading, where it renders."""
    from tests.vision.ocr.pdfgen import annotated_invoice

    data = annotated_invoice()
    result, image = _read(data)
    assert result.source == SOURCE_TEXT_LAYER, result.source_reason
    assert _rows(result) == [["Invoice number INV-2024-4202"], ["Total due", "1,190.00 EUR"]]
    amount = next(line for line in result.lines if line.text == "1,190.00 EUR")
    ink = _ink(image, (600, 250, 1100, 330))  # the annotation: x 300-500 pt, 127-152 pt from the top
    assert amount.bbox[0] <= ink[0] + 2 and amount.bbox[2] >= ink[2] - 2, (amount.bbox, ink)


def test_a_layer_mapped_for_another_image_size_is_not_trusted(born) -> None:
    data, _, image = born
    texts = page_texts(data, {1: (image.width // 2, image.height // 2)})[1]
    assert read_page(image, texts).source == SOURCE_OCR


# -- through the platform: upload, the real worker, the result ---------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_ocr_job_reads_a_text_page_from_its_layer_and_ocrs_a_scanned_page(
    api_client, user_factory, redis_url
) -> None:
    """GIVEN a two-page PDF, page 1 born-digital and page 2 a scan (an image, no text) THEN the
    ocr job's result says page 1 came from the text layer and page 2 from OCR, both with lines."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.vision.jobs_helpers import wait_finished

    scan = _page(texts=[w[2].replace("INV", "SCN") for w in WORDS])
    data = make_pdf([_page(), Page(image=draw_page(scan))])
    api_client.force_authenticate(user_factory())
    upload = SimpleUploadedFile("mixed.pdf", data, content_type="application/pdf")
    response = api_client.post("/api/jobs", {"task": "ocr", "file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    done = wait_finished(api_client, response.json()["status_url"], timeout=300)
    assert done["status"] == "succeeded", done
    pages = done["result"]["data"]["pages"]
    assert [(p["page"], p["source"]) for p in pages] == [(1, SOURCE_TEXT_LAYER), (2, SOURCE_OCR)]
    assert "INV-2024-4202" in pages[0]["text"] and "SCN-2024-4202" in pages[1]["text"]
    assert all(line["bbox"] for p in pages for line in p["lines"])
