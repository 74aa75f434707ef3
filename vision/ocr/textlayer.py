"""Reading a PDF page from its text layer instead of its pixels.

A born-digital PDF carries its exact text: every character with its box. pdfium gives them,
mapped to the pixels of the page image the upload rendered (vision/ocr/textlayer_pdf.py); they
are grouped into words, rows and cells the way OCR detection cuts a page
(vision/ocr/textlayer_cells.py) and returned as the OCR engine's `OcrResult` with
`source="text_layer"` and confidence 1.0, so the invoice reader's row/column logic and the box
drawing work unchanged.

A text layer is used only when it can be trusted:
- it has text at all, and few of its glyphs lack a unicode mapping (a font without ToUnicode
  gives glyph ids as "text": `,QYRLFH` for `Invoice`);
- a quick OCR sample agrees with it (vision/ocr/textlayer_check.py): for every font checked, the
  median similarity of what the pixels say and what the layer says must reach `AGREEMENT_MIN`.
Otherwise the page is OCR'd whole (`source="ocr"`, `source_reason` says why). Large image areas
of a text page that hold no text (a pasted scan of a table, a scanned page with only a stamp
or page number in its text layer) are OCR'd and their lines join the page's.

No Django. pdfium is not thread-safe: `page_texts` takes the lock its caller uses for pdfium.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from vision.ocr.lines import BBox, OcrLine, OcrResult, order_lines
from vision.ocr.textlayer_cells import text_lines, words
from vision.ocr.textlayer_check import agreement
from vision.ocr.textlayer_pdf import PageText, page_texts

if TYPE_CHECKING:
    from PIL import Image

    from vision.ocr.engine import OcrEngine

SOURCE_TEXT_LAYER = "text_layer"
SOURCE_OCR = "ocr"

MIN_CHARS = 3  # fewer visible characters than this: the page has no text layer to speak of
MAX_UNMAPPED = 0.1  # share of glyphs without a unicode mapping above which the layer is garbage
# Text not running left to right on the image (a margin note set vertically) is left out of the
# reading, as OCR's lines would not hold it either; a page mostly so is OCR'd (its classifier
# turns upside-down lines).
MAX_SIDEWAYS = 0.5
AGREEMENT_MIN = 0.6  # median similarity of sampled words, layer vs pixels (clean pages: ~1.0)
# An image object covering at least this share of the page, with text-layer characters covering
# less than REGION_TEXT_MIN of it, is OCR'd; one covering nearly the whole page makes it a scan.
REGION_MIN_AREA = 0.03
REGION_TEXT_MIN = 0.01
WHOLE_PAGE = 0.85
MAX_REGIONS = 4
DETECTOR_MIN_SIDE = 736  # RapidOCR's Det.limit_side_len with limit_type "min" (its config.yaml)


def _inside(box: BBox, region: BBox) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


def _area(box: BBox) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _textless_images(text: PageText) -> list[BBox]:
    """Image objects large enough to hold text whose area the layer's characters barely cover."""
    page = float(text.width * text.height) or 1.0
    chars = [c for c in text.chars if c.text]
    out = []
    for region in sorted(text.images, key=_area, reverse=True):
        if _area(region) < REGION_MIN_AREA * page or any(_inside(region, r) for r in out):
            continue
        covered = sum(_area(c.bbox) for c in chars if _inside(c.bbox, region))
        if covered < REGION_TEXT_MIN * _area(region):
            out.append(region)
        if len(out) == MAX_REGIONS:
            break
    return out


def _on_paper(crop: Image.Image) -> Image.Image:
    """`crop` at the top left of white paper at least DETECTOR_MIN_SIDE on each side: the detector
    scales an image's short side up to that, so a 600 x 140 logo alone would be read at 3200 x
    740 px (seconds); on paper it is read at the page's own scale, as in a whole-page OCR."""
    from PIL import Image

    if min(crop.size) >= DETECTOR_MIN_SIDE:
        return crop
    paper = Image.new(
        "RGB", (max(crop.width, DETECTOR_MIN_SIDE), max(crop.height, DETECTOR_MIN_SIDE)), "white"
    )
    paper.paste(crop.convert("RGB"), (0, 0))
    return paper


def _ocr(image: Image.Image, engine: OcrEngine, reason: str, spent: float) -> OcrResult:
    result = engine.read(image)
    result.source, result.source_reason = SOURCE_OCR, reason
    result.elapsed_s += spent
    return result


def read_page(image: Image.Image, text: PageText | None, *, engine: OcrEngine | None = None) -> OcrResult:
    """One page: from its text layer when it has a trustworthy one, else by OCR of `image`."""
    from vision.ocr.engine import get_ocr_engine

    started = time.perf_counter()
    engine = engine or get_ocr_engine()
    spent = text.elapsed_s if text is not None else 0.0
    if text is None:
        return _ocr(image, engine, "not a PDF page with a text layer", spent)
    if (text.width, text.height) != image.size:
        return _ocr(image, engine, "the text layer was mapped to another page size", spent)
    visible = text.visible_chars
    if len(visible) < MIN_CHARS:
        return _ocr(image, engine, "the page has no text layer", spent)
    if (share := text.unmapped_share) > MAX_UNMAPPED:
        return _ocr(image, engine, f"{share:.0%} of the text layer's glyphs have no unicode mapping", spent)
    if (share := text.sideways_share) > MAX_SIDEWAYS:
        return _ocr(image, engine, f"{share:.0%} of the text layer runs sideways or upside down", spent)
    regions = _textless_images(text)
    whole = [r for r in regions if _area(r) >= WHOLE_PAGE * text.width * text.height]
    if whole:
        spent += time.perf_counter() - started
        return _ocr(
            image, engine, f"the page is an image; its text layer has {len(visible)} characters", spent
        )
    found = [w for w in words(text) if not any(_inside(w.bbox, r) for r in regions)]
    lines = text_lines(text, found)
    agreed = agreement(image, found, engine)
    if agreed is not None and agreed < AGREEMENT_MIN:
        spent += time.perf_counter() - started
        return _ocr(
            image, engine, f"the text layer disagrees with the page's pixels (agreement {agreed:.2f})", spent
        )
    reason = "" if agreed is not None else "no word the recogniser can read to check it against"
    for region in regions:  # a picture of text on a text page: OCR that area only
        box = tuple(int(v) for v in (region[0], region[1], region[2] + 0.999, region[3] + 0.999))
        part = engine.read(_on_paper(image.crop(box)))
        for line in part.lines:
            quad = tuple((x + box[0], y + box[1]) for x, y in line.box)
            bbox = (
                line.bbox[0] + box[0],
                line.bbox[1] + box[1],
                line.bbox[2] + box[0],
                line.bbox[3] + box[1],
            )
            lines.append(OcrLine(line.text, quad, bbox, line.confidence))  # type: ignore[arg-type]
    if regions:
        reason = f"{len(regions)} image area(s) without text OCR'd"
    result = OcrResult(text.width, text.height, order_lines(lines), spent + time.perf_counter() - started)
    result.source, result.source_reason = SOURCE_TEXT_LAYER, reason
    return result


def read_pdf_pages(
    data: bytes, images: dict[int, Image.Image], *, lock: contextlib.AbstractContextManager | None = None
) -> dict[int, OcrResult]:
    """Each page of a PDF (1-based number → its rendered image) read by `read_page`."""
    texts = page_texts(data, {number: image.size for number, image in images.items()}, lock=lock)
    return {number: read_page(image, texts.get(number)) for number, image in images.items()}
