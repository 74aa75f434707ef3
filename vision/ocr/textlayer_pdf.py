"""A PDF page's text layer as pdfium (pypdfium2) gives it: every character with its box, in the
pixels of the page image the upload rendered, and the boxes of the page's image objects.

Characters come in page space; they are mapped with `FPDF_PageToDevice`, the transform pdfium
renders with (crop box, /Rotate, scale), so they sit where the rendered image shows them. A
character also says whether its glyph lacks a unicode mapping, whether it is drawn invisibly (the
OCR layer of a scan), whether it runs left to right, and which font draws it: what
vision/ocr/textlayer.py needs to decide whether to trust the layer.

No Django. pdfium is not thread-safe: `page_texts` takes the lock its caller uses for pdfium.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from vision.ocr.lines import BBox

# A character's box spans from this many font sizes above its baseline to this many below (Latin
# ascenders reach ~0.75, descenders ~0.22; CJK ideographs ~0.88 / 0.12).
LINE_ASCENT = 0.8
LINE_DESCENT = 0.22

_INVISIBLE_MODES = (3, 7)  # FPDF_TEXTRENDERMODE_INVISIBLE, FPDF_TEXTRENDERMODE_CLIP


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
