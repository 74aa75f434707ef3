"""Reading a PDF page from its text layer instead of its pixels.

A born-digital PDF carries its exact text: every character with its box. pdfium (pypdfium2) gives
them in page space; they are mapped to the pixels of the page image the upload rendered
(`FPDF_PageToDevice`, the transform pdfium renders with: crop box, /Rotate, scale), grouped into
words, words into visual rows and cells the way OCR detection cuts a page (a wide gap ends a
cell), and returned as the OCR engine's `OcrResult` with `source="text_layer"` and confidence 1.0,
so the invoice reader's row/column logic and the box drawing work unchanged.

A text layer is used only when it can be trusted:
- it has text at all, and few of its glyphs lack a unicode mapping (a font without ToUnicode
  gives glyph ids as "text": `,QYRLFH` for `Invoice`);
- a quick OCR sample agrees with it: a few of its words, spread over the page and over its
  fonts, are cut out of the page image and read by the recogniser alone (no detection, ~20-30
  ms a word); for every font checked, the median similarity of what the pixels say and what the
  layer says must reach `AGREEMENT_MIN`. This catches invisible OCR layers of scans that are
  wrong or shifted, text hidden under an image, and fonts whose unicode map lies.
Otherwise the page is OCR'd whole (`source="ocr"`, `source_reason` says why). Large image areas
of a text page that hold no text (a pasted scan of a table, a scanned page with only a stamp
or page number in its text layer) are OCR'd and their lines join the page's.

No Django. pdfium is not thread-safe: `page_texts` takes the lock its caller uses for pdfium.
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import math
import statistics
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vision.ocr.engine import OcrLine, OcrResult, order_lines

if TYPE_CHECKING:
    from PIL import Image

    from vision.ocr.engine import BBox, OcrEngine

SOURCE_TEXT_LAYER = "text_layer"
SOURCE_OCR = "ocr"

MIN_CHARS = 3  # fewer visible characters than this: the page has no text layer to speak of
MAX_UNMAPPED = 0.1  # share of glyphs without a unicode mapping above which the layer is garbage
# Text not running left to right on the image (a margin note set vertically) is left out of the
# reading, as OCR's lines would not hold it either; a page mostly so is OCR'd (its classifier
# turns upside-down lines).
MAX_SIDEWAYS = 0.5
# A character's box spans from this many font sizes above its baseline to this many below (Latin
# ascenders reach ~0.75, descenders ~0.22; CJK ideographs ~0.88 / 0.12).
LINE_ASCENT = 0.8
LINE_DESCENT = 0.22
AGREEMENT_MIN = 0.6  # median similarity of sampled words, layer vs pixels (clean pages: ~1.0)
SAMPLE_WORDS = 5  # words of the layer read from the pixels to check it (~20-30 ms each)
SAMPLE_MAX = 8  # ... at most, with several fonts to check
FONT_MIN_SHARE = 0.05  # a font with less of the page's text is not checked on its own
SAMPLE_MIN_CHARS = 4  # a sampled word has at least this many letters/digits the recogniser knows
# A gap wider than this many text heights between two words of a row starts a new cell, as
# OCR detection splits a row at column gaps (one space is ~0.27 of a DejaVu line's height).
CELL_GAP = 1.0
# An image object covering at least this share of the page, with text-layer characters covering
# less than REGION_TEXT_MIN of it, is OCR'd; one covering nearly the whole page makes it a scan.
REGION_MIN_AREA = 0.03
REGION_TEXT_MIN = 0.01
WHOLE_PAGE = 0.85
MAX_REGIONS = 4
DETECTOR_MIN_SIDE = 736  # RapidOCR's Det.limit_side_len with limit_type "min" (its config.yaml)

_INVISIBLE_MODES = (3, 7)  # FPDF_TEXTRENDERMODE_INVISIBLE, FPDF_TEXTRENDERMODE_CLIP
_LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"}  # fmt: skip


@dataclass(frozen=True)
class Char:
    text: str  # one character ("" for a separator pdfium generated or a space)
    bbox: BBox  # in page-image pixels
    unmapped: bool  # pdfium found no unicode for the glyph
    invisible: bool  # drawn with an invisible text render mode (OCR layers of scans)
    upright: bool = True  # its baseline runs left to right on the image (not sideways, not upside down)
    font: int = 0  # which font draws it (pdfium's handle, an identity only): fonts are checked apart


@dataclass
class PageText:
    """What one PDF page's text layer holds, in the pixels of its rendered image."""

    width: int
    height: int
    chars: list[Char] = field(default_factory=list)  # in pdfium's text order
    images: list[BBox] = field(default_factory=list)  # image objects' boxes, page pixels
    elapsed_s: float = 0.0

    @property
    def visible_chars(self) -> list[Char]:
        return [c for c in self.chars if c.text.strip() or c.unmapped]

    @property
    def sideways_share(self) -> float:
        chars = self.visible_chars
        return sum(not c.upright for c in chars) / len(chars) if chars else 0.0

    @property
    def unmapped_share(self) -> float:
        chars = self.visible_chars
        return sum(c.unmapped or _garbage(c.text) for c in chars) / len(chars) if chars else 0.0


def _garbage(text: str) -> bool:
    """A character no real text layer means: controls, private use, replacement characters."""
    if not text:
        return False
    code = ord(text[0])
    return (
        code in (0xFFFD, 0xFFFE, 0xFFFF) or 0xE000 <= code <= 0xF8FF or unicodedata.category(text[0]) == "Cc"
    )


# -- pdfium ---------------------------------------------------------------------------------------


def _upright(to_px, a: float, b: float) -> bool:
    """Whether a baseline running (a, b) in page space runs left to right on the image."""
    ox, oy = to_px(0.0, 0.0)
    dx, dy = to_px(a, b)
    dx, dy = dx - ox, dy - oy
    return dx > 0 and abs(dy) <= 0.2 * dx


def _device_transform(page, width: int, height: int) -> Callable[[float, float], tuple[float, float]]:
    """Page space → pixels of a `width` × `height` rendering, as pdfium renders (FPDF_PageToDevice
    on three points at 16× the size, for sub-pixel precision of its integer outputs)."""
    import pypdfium2.raw as pdfium_c

    zoom = 16
    out_x, out_y = ctypes.c_int(), ctypes.c_int()

    def device(x: float, y: float) -> tuple[float, float]:
        pdfium_c.FPDF_PageToDevice(page, 0, 0, width * zoom, height * zoom, 0, x, y, out_x, out_y)
        return out_x.value / zoom, out_y.value / zoom

    ox, oy = device(0.0, 0.0)
    ax, ay = device(1000.0, 0.0)
    bx, by = device(0.0, 1000.0)
    a, b = (ax - ox) / 1000, (ay - oy) / 1000
    c, d = (bx - ox) / 1000, (by - oy) / 1000
    return lambda x, y: (ox + a * x + c * y, oy + b * x + d * y)


def _rect(to_px, left: float, bottom: float, right: float, top: float) -> BBox:
    x0, y0 = to_px(left, top)
    x1, y1 = to_px(right, bottom)
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def page_text(page, width: int, height: int) -> PageText:
    """The text layer of one pypdfium2 page mapped to a `width` × `height` rendering of it.
    The caller holds the pdfium lock."""
    import pypdfium2.raw as pdfium_c

    started = time.perf_counter()
    to_px = _device_transform(page, width, height)
    result = PageText(width, height)
    textpage = page.get_textpage()
    try:
        rect = pdfium_c.FS_RECTF()
        matrix = pdfium_c.FS_MATRIX()
        origin_x, origin_y = ctypes.c_double(), ctypes.c_double()
        ox, oy = to_px(0.0, 0.0)
        px_per_unit = math.hypot(to_px(1.0, 0.0)[0] - ox, to_px(1.0, 0.0)[1] - oy)
        styles: dict[int, tuple[bool, bool, float, int]] = {}  # text object → invisible, upright, em, font
        for index in range(textpage.count_chars()):
            code = pdfium_c.FPDFText_GetUnicode(textpage, index)
            unmapped = bool(pdfium_c.FPDFText_HasUnicodeMapError(textpage, index))
            if pdfium_c.FPDFText_IsGenerated(textpage, index) == 1:
                result.chars.append(Char("", (0.0, 0.0, 0.0, 0.0), False, False))  # a separator
                continue
            if code == 0x02 and pdfium_c.FPDFText_IsHyphen(textpage, index) == 1:
                code = 0x2D  # a hyphen where a word breaks at the end of a line
            text = chr(code) if 0 < code < 0x110000 and not (0xD800 <= code <= 0xDFFF) else "\ufffd"
            if not pdfium_c.FPDFText_GetLooseCharBox(textpage, index, rect):
                continue
            bbox = _rect(to_px, rect.left, rect.bottom, rect.right, rect.top)
            if bbox[2] <= 0 or bbox[3] <= 0 or bbox[0] >= width or bbox[1] >= height:
                continue  # outside the page's crop box: not on the image
            obj = pdfium_c.FPDFText_GetTextObject(textpage, index)
            key = ctypes.cast(obj, ctypes.c_void_p).value or 0
            if key not in styles:
                invisible = bool(obj) and pdfium_c.FPDFTextObj_GetTextRenderMode(obj) in _INVISIBLE_MODES
                upright, em = True, 0.0
                if pdfium_c.FPDFText_GetMatrix(textpage, index, matrix):
                    upright = _upright(to_px, matrix.a, matrix.b)
                    size = pdfium_c.FPDFText_GetFontSize(textpage, index)  # Tf, before the matrix
                    em = size * math.hypot(matrix.c, matrix.d) * px_per_unit
                font = ctypes.cast(pdfium_c.FPDFTextObj_GetFont(obj), ctypes.c_void_p).value if obj else 0
                styles[key] = (invisible, upright, em, font or 0)
            invisible, upright, em, font = styles[key]
            if upright and em > 0 and pdfium_c.FPDFText_GetCharOrigin(textpage, index, origin_x, origin_y):
                # The line box from the baseline and the font size, not the font's own ascent and
                # descent: those vary by font (a bullet's spans two lines) and would chain rows.
                baseline = to_px(origin_x.value, origin_y.value)[1]
                top, bottom = baseline - LINE_ASCENT * em, baseline + LINE_DESCENT * em
                if 0.5 <= (bottom - top) / max(bbox[3] - bbox[1], 1e-6) <= 2.0:  # else odd metrics
                    bbox = (bbox[0], top, bbox[2], bottom)
            bbox = (
                max(0.0, bbox[0]),
                max(0.0, bbox[1]),
                min(float(width), bbox[2]),
                min(float(height), bbox[3]),
            )
            result.chars.append(Char(text if text.strip() else "", bbox, unmapped, invisible, upright, font))
    finally:
        textpage.close()
    for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=4):
        left, bottom, right, top = obj.get_bounds()
        x0, y0, x1, y1 = _rect(to_px, left, bottom, right, top)
        box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
        if box[2] > box[0] and box[3] > box[1]:
            result.images.append(box)
    result.elapsed_s = time.perf_counter() - started
    return result


def _flattened(pdf, page, index: int):
    """The page with its annotations (filled form fields, free text, stamps) merged into its
    content, as the rendered image shows them: a text page's index holds only page content, and a
    form's values would be missing from the reading. In memory only; the page is reloaded."""
    import pypdfium2.raw as pdfium_c

    if pdfium_c.FPDFPage_GetAnnotCount(page) <= 0:
        return page
    if pdfium_c.FPDFPage_Flatten(page, pdfium_c.FLAT_NORMALDISPLAY) != pdfium_c.FLATTEN_SUCCESS:
        return page
    page.close()
    return pdf[index]


def page_texts(
    data: bytes, sizes: dict[int, tuple[int, int]], *, lock: contextlib.AbstractContextManager | None = None
) -> dict[int, PageText]:
    """The text layers of a PDF's pages: `sizes` maps a 1-based page number to the size of its
    rendered image. Pages that cannot be read are left out (they are OCR'd)."""
    import pypdfium2

    out: dict[int, PageText] = {}
    with lock if lock is not None else contextlib.nullcontext():
        try:
            pdf = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError:
            return out
        try:
            for number, (width, height) in sizes.items():
                if not 1 <= number <= len(pdf):
                    continue
                page = pdf[number - 1]
                try:
                    page = _flattened(pdf, page, number - 1)
                    out[number] = page_text(page, width, height)
                except pypdfium2.PdfiumError:
                    continue
                finally:
                    page.close()
        finally:
            pdf.close()
    return out


# -- characters → words → cells -------------------------------------------------------------------


@dataclass
class _Word:
    text: str
    bbox: BBox
    font: int = 0

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]


def _union(boxes: list[BBox]) -> BBox:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _same_line(a: BBox, b: BBox) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap >= 0.5 * min(a[3] - a[1], b[3] - b[1])


def words(text: PageText) -> list[_Word]:
    """Runs of characters in pdfium's order, cut at spaces, line changes and backward jumps."""
    out: list[_Word] = []
    run: list[Char] = []

    def close() -> None:
        if run:
            joined = "".join(_LIGATURES.get(c.text, c.text) for c in run)
            out.append(_Word(joined, _union([c.bbox for c in run]), run[0].font))
            run.clear()

    for char in text.chars:
        if not char.text or not char.upright:  # sideways runs (a margin note) are left out
            close()
            continue
        if run:
            last = run[-1].bbox
            height = min(last[3] - last[1], char.bbox[3] - char.bbox[1])
            gap = char.bbox[0] - last[2]
            # a backward jump starts before the last character does (the parts of a ligature, ffi,
            # share one box and continue the word)
            back = char.bbox[0] < last[0] - 0.25 * height
            if not _same_line(last, char.bbox) or back or gap > 0.5 * height:
                close()
        run.append(char)
    close()
    return out


def _line(text: str, bbox: BBox) -> OcrLine:
    x0, y0, x1, y1 = bbox
    return OcrLine(text, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)), bbox, 1.0)


def text_lines(text: PageText, found: list[_Word] | None = None) -> list[OcrLine]:
    """The layer as OCR lines: words grouped into visual rows (the OCR engine's `order_lines`),
    neighbours in a row joined into one cell unless a wide gap parts them; reading order and
    `row` as the engine gives them."""
    rows: dict[int, list[OcrLine]] = {}
    for line in order_lines([_line(w.text, w.bbox) for w in (words(text) if found is None else found)]):
        rows.setdefault(line.row, []).append(line)
    cells: list[OcrLine] = []
    for row in rows.values():
        # A row can hold text lines stacked beside a tall heading (a two-line address next to a big
        # title): each text line of the row makes its own cells, never one cell of both.
        stacked: list[list[OcrLine]] = []
        for word in row:
            home = next((s for s in stacked if _same_line(s[-1].bbox, word.bbox)), None)
            if home is None:
                stacked.append([word])
            else:
                home.append(word)
        for part in stacked:
            current = [part[0]]
            for word in part[1:]:
                last = current[-1]
                if word.bbox[0] - last.bbox[2] > CELL_GAP * min(last.height, word.height):
                    cells.append(_line(" ".join(w.text for w in current), _union([w.bbox for w in current])))
                    current = [word]
                else:
                    current.append(word)
            cells.append(_line(" ".join(w.text for w in current), _union([w.bbox for w in current])))
    return order_lines(cells)


# -- is the layer what the page shows? ------------------------------------------------------------


def _known(ch: str) -> bool:
    """A letter or digit the recogniser reads (Latin scripts, digits, CJK)."""
    if ch.isdigit():
        return True
    if not ch.isalpha():
        return False
    name = unicodedata.name(ch, "")
    return name.startswith(("LATIN", "CJK", "HIRAGANA", "KATAKANA"))


def _normal(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _spread(fit: list[_Word], count: int) -> list[_Word]:
    """Up to `count` of `fit` spread over the page, preferring words of about 8 characters (long
    enough to tell, short enough to read fast: the recogniser pads a batch to its widest)."""
    if len(fit) <= count:
        return fit
    fit = sorted(fit, key=lambda x: (x.bbox[1], x.bbox[0]))
    size = len(fit) / count
    picked: list[_Word] = []
    for index in range(count):  # from each of `count` bands of the page, one word
        band = fit[int(index * size) : int((index + 1) * size)] or fit[-1:]
        fresh = [w for w in band if w.text not in {p.text for p in picked}] or band
        picked.append(max(fresh, key=lambda x: (min(len(x.text), 8), -len(x.text))))
    return picked


def _samples(found: list[_Word]) -> dict[int, list[_Word]]:
    """Words to read from the pixels, per font: every font carrying at least FONT_MIN_SHARE of
    the page's checkable characters gets its share of SAMPLE_WORDS (at least 2), since one font
    with a broken unicode map garbles only its own words (headings, say)."""
    fit = [w for w in found if sum(_known(ch) for ch in w.text) >= SAMPLE_MIN_CHARS and w.height >= 6]
    total = sum(len(w.text) for w in fit)
    fonts: dict[int, list[_Word]] = {}
    for word in fit:
        fonts.setdefault(word.font, []).append(word)
    out = {}
    for font, group in sorted(fonts.items(), key=lambda kv: -sum(len(w.text) for w in kv[1])):
        share = sum(len(w.text) for w in group) / total
        if share < FONT_MIN_SHARE and out:
            continue
        out[font] = _spread(group, max(2, round(SAMPLE_WORDS * share)))
        if sum(len(x) for x in out.values()) >= SAMPLE_MAX:
            break
    return out


def agreement(image: Image.Image, found: list[_Word], engine: OcrEngine) -> float | None:
    """How well the layer's words match what the recogniser reads in the same boxes of the
    image, 0..1: per checked font the median similarity of its sampled words, and the worst
    font's figure; None when no word can be sampled (e.g. only a script the recogniser cannot
    read)."""
    groups = _samples(found)
    sample = [word for words_ in groups.values() for word in words_]
    if not sample:
        return None
    crops = []
    for word in sample:
        x0, y0, x1, y1 = word.bbox
        # less than a space's width sideways (~0.27 of the height), so no neighbour shows
        pad_y, pad_x = 0.2 * word.height, 0.15 * word.height
        box = (
            max(0, int(x0 - pad_x)),
            max(0, int(y0 - pad_y)),
            min(image.width, int(x1 + pad_x) + 1),
            min(image.height, int(y1 + pad_y) + 1),
        )
        crops.append(image.crop(box))
    read = iter(engine.recognize(crops))
    worst = 1.0
    for words_ in groups.values():
        scores = [
            difflib.SequenceMatcher(None, _normal(word.text), _normal(next(read)[0]), autojunk=False).ratio()
            for word in words_
        ]
        worst = min(worst, statistics.median(scores))
    return worst


# -- one page -------------------------------------------------------------------------------------


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
        return _ocr(image, engine, f"the page is an image; its text layer has {len(visible)} characters", spent + time.perf_counter() - started)  # fmt: skip
    found = [w for w in words(text) if not any(_inside(w.bbox, r) for r in regions)]
    lines = text_lines(text, found)
    agreed = agreement(image, found, engine)
    if agreed is not None and agreed < AGREEMENT_MIN:
        spent += time.perf_counter() - started
        return _ocr(image, engine, f"the text layer disagrees with the page's pixels (agreement {agreed:.2f})", spent)  # fmt: skip
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
