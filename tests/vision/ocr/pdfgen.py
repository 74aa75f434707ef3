"""Born-digital test PDFs written with pdfium's page-object API (pypdfium2, already a dependency):
text objects in an embedded TrueType font (DejaVu, Debian's fonts-dejavu-core), optionally drawn
invisible (render mode 3, as OCR tools write their text layer), over an optional full-page image
(a "scan"), plus ruled lines and frames. Positions are in the pixels of the page rendered at
`dpi`, top-left origin, as a PIL drawing gives them, so a test knows where each word must land.

`born_digital(seed, layout)` draws one of the invoice generator's pages (tests/vision/ocr/
invoice_gen.py) as such a PDF: the same words at the same places, with the generator's truth.
"""

from __future__ import annotations

import ctypes
import io
from dataclasses import dataclass, field

import pypdfium2
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
DPI = 150
A4_PX = (1240, 1754)  # A4 at 150 dpi, as the invoice generator draws


@dataclass
class Text:
    x: float  # left edge, page pixels at `dpi`
    y: float  # top of the text as PIL draws it (the ascender line), page pixels
    text: str
    size: float  # font size in pixels at `dpi`
    font: str = FONT  # a TrueType file
    vertical: bool = False  # runs upwards (rotated 90° counter-clockwise), from (x, y) = its start


@dataclass
class Page:
    texts: list[Text] = field(default_factory=list)
    size: tuple[int, int] = A4_PX  # pixels at `dpi`, as displayed
    rotate: bool = False  # stored as a portrait page with /Rotate 90, its content drawn turned back
    image: Image.Image | None = None  # drawn over the whole page, below the text
    invisible: bool = False  # text render mode 3 (no paint), as an OCR tool's text layer
    color: tuple[int, int, int] = (20, 20, 30)
    lines: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # x0 y0 x1 y1 w
    pictures: list[tuple[Image.Image, tuple[float, float]]] = field(default_factory=list)  # at x, y (px)

    def text(self, x: float, y: float, text: str, size: float = 24, bold: bool = False) -> None:
        self.texts.append(Text(x, y, text, size, FONT_BOLD if bold else FONT))


def _load_font(pdf, path: str):
    with open(path, "rb") as handle:
        data = handle.read()
    buffer = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
    font = pdfium_c.FPDFText_LoadFont(pdf, buffer, len(data), pdfium_c.FPDF_FONT_TRUETYPE, True)
    if not font:
        raise RuntimeError(f"pdfium cannot load the font {path}")
    return font, buffer  # the buffer stays alive as long as the font handle


def make_pdf(pages: list[Page], *, dpi: int = DPI) -> bytes:
    """A PDF with one page per `Page`, each `page.size` pixels at `dpi`."""
    scale = 72 / dpi
    pdf = pypdfium2.PdfDocument.new()
    fonts: dict[str, tuple[object, object]] = {}
    try:
        for spec in pages:
            width_pt, height_pt = spec.size[0] * scale, spec.size[1] * scale
            if spec.rotate:  # the stored page is the displayed one turned 90° counter-clockwise
                if spec.image is not None or spec.pictures or spec.lines:
                    raise ValueError("rotated test pages hold text only")
                page = pdf.new_page(height_pt, width_pt)
                pdfium_c.FPDFPage_SetRotation(page, 1)
            else:
                page = pdf.new_page(width_pt, height_pt)
            if spec.image is not None:
                image = pypdfium2.PdfImage.new(pdf)
                buffer = io.BytesIO()
                spec.image.convert("RGB").save(buffer, "JPEG", quality=90)
                image.load_jpeg(io.BytesIO(buffer.getvalue()), inline=False)
                image.set_matrix(pypdfium2.PdfMatrix().scale(width_pt, height_pt))
                page.insert_obj(image)
            for picture, (x, y) in spec.pictures:  # an image of text pasted on the page
                image = pypdfium2.PdfImage.new(pdf)
                buffer = io.BytesIO()
                picture.convert("RGB").save(buffer, "JPEG", quality=92)
                image.load_jpeg(io.BytesIO(buffer.getvalue()), inline=False)
                w, h = picture.width * scale, picture.height * scale
                image.set_matrix(
                    pypdfium2.PdfMatrix().scale(w, h).translate(x * scale, height_pt - y * scale - h)
                )
                page.insert_obj(image)
            for x0, y0, x1, y1, stroke in spec.lines:
                path = pdfium_c.FPDFPageObj_CreateNewPath(x0 * scale, height_pt - y0 * scale)
                pdfium_c.FPDFPath_LineTo(path, x1 * scale, height_pt - y1 * scale)
                pdfium_c.FPDFPageObj_SetStrokeColor(path, 100, 100, 110, 255)
                pdfium_c.FPDFPageObj_SetStrokeWidth(path, stroke * scale)
                pdfium_c.FPDFPath_SetDrawMode(path, pdfium_c.FPDF_FILLMODE_NONE, True)
                pdfium_c.FPDFPage_InsertObject(page, path)
            for text in spec.texts:
                if text.font not in fonts:
                    fonts[text.font] = _load_font(pdf, text.font)
                face = ImageFont.truetype(text.font, round(text.size))
                ascent = face.getmetrics()[0] * text.size / round(text.size)
                obj = pdfium_c.FPDFPageObj_CreateTextObj(pdf, fonts[text.font][0], text.size * scale)
                encoded = (text.text + "\0").encode("utf-16-le")
                chars = ctypes.create_string_buffer(encoded, len(encoded))
                pdfium_c.FPDFText_SetText(obj, ctypes.cast(chars, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
                pdfium_c.FPDFPageObj_SetFillColor(obj, *spec.color, 255)
                if spec.invisible:
                    pdfium_c.FPDFTextObj_SetTextRenderMode(obj, pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE)
                if spec.rotate:  # displayed (X, Y) is stored (Y, X); display right is stored up
                    pdfium_c.FPDFPageObj_Transform(
                        obj, 0, 1, -1, 0, (text.y + ascent) * scale, text.x * scale
                    )
                elif text.vertical:  # baseline upwards from (x, y), glyph tops to the left
                    pdfium_c.FPDFPageObj_Transform(
                        obj, 0, 1, -1, 0, text.x * scale, height_pt - text.y * scale
                    )
                else:
                    baseline = height_pt - (text.y + ascent) * scale
                    pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, text.x * scale, baseline)
                pdfium_c.FPDFPage_InsertObject(page, obj)
            page.gen_content()
            page.close()
        out = io.BytesIO()
        pdf.save(out)
        return out.getvalue()
    finally:
        pdf.close()


def draw_page(page: Page) -> Image.Image:
    """The page's texts and lines drawn by PIL (a clean "scan" of what `make_pdf` shows)."""
    image = Image.new("RGB", page.size, "white")
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1, stroke in page.lines:
        draw.line((x0, y0, x1, y1), fill=(100, 100, 110), width=round(stroke))
    for text in page.texts:
        draw.text(
            (text.x, text.y), text.text, font=ImageFont.truetype(text.font, round(text.size)), fill=page.color
        )
    return image


def render(data: bytes, dpi: int = DPI) -> list[Image.Image]:
    """The pages as the upload renders them (vision/services/documents.py: pdfium at `dpi`)."""
    pdf = pypdfium2.PdfDocument(data)
    try:
        return [pdf[i].render(scale=dpi / 72).to_pil().convert("RGB") for i in range(len(pdf))]
    finally:
        pdf.close()


# -- the invoice generator's pages as born-digital PDFs -------------------------------------------

BORN_DIGITAL_LAYOUTS = ("right_box", "label_table", "stacked", "receipt", "multipage")  # no CJK font file


def born_digital(seed: int, layout: str):
    """(PDF bytes, truth, pages) of generated invoice `seed` in `layout`, its pages drawn as PDF
    text and lines instead of pixels (the generator's clean damage class: nothing else changes)."""
    from tests.vision.ocr import invoice_gen

    if layout not in BORN_DIGITAL_LAYOUTS:
        raise ValueError(f"{layout}: only the Latin layouts have a TrueType font file for pdfium")
    drawn: list[Page] = []
    base = invoice_gen.Canvas

    class Recording(base):  # type: ignore[misc, valid-type]
        def __init__(self, size: tuple[int, int], family: str) -> None:
            super().__init__(size, family)
            self.page = Page(size=size)
            drawn.append(self.page)

        def text(self, x, y, text, size=22, *, bold=False, align="left"):
            right = super().text(x, y, text, size, bold=bold, align=align)
            if text.strip():
                face = invoice_gen.FONTS[f"{self.family}_bold" if bold else self.family]
                self.page.texts.append(Text(right - self.width(text, size, bold), y, text, size, face))
            return right

        def rect(self, box, width=2):
            super().rect(box, width)
            x0, y0, x1, y1 = box
            for line in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)):
                self.page.lines.append((*line, width))

        def hline(self, x0, x1, y, width=2):
            super().hline(x0, x1, y, width)
            self.page.lines.append((x0, y, x1, y, width))

        def vline(self, x, y0, y1, width=2):
            super().vline(x, y0, y1, width)
            self.page.lines.append((x, y0, x, y1, width))

    invoice_gen.Canvas = Recording
    try:
        invoice = invoice_gen.generate(seed, layout, "clean")
    finally:
        invoice_gen.Canvas = base
    return make_pdf(drawn), invoice.truth, drawn


# -- hand-written PDFs, for structures pdfium's editing API does not write ------------------------


def hand_pdf(objects: list[bytes]) -> bytes:
    """A PDF of `objects` (object 1 the catalog), numbered from 1, with a valid xref table."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def annotated_invoice(amount: str = "1,190.00 EUR") -> bytes:
    """An A4 page of Helvetica text whose amount is not page content but a FreeText annotation's
    appearance (as filled form fields and stamps are): rendered on the page, absent from the
    page's own text."""
    content = (
        b"BT /F1 14 Tf 72 760 Td (Invoice number INV-2024-4202) Tj ET "
        b"BT /F1 14 Tf 72 700 Td (Total due) Tj ET"
    )
    appearance = b"BT /F1 14 Tf 2 7 Td (%s) Tj ET" % amount.encode("latin-1")
    return hand_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> "
            b"/Contents 4 0 R /Annots [6 0 R] >>",
            stream(content),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
            b"<< /Type /Annot /Subtype /FreeText /Rect [300 690 500 715] /AP << /N 7 0 R >> /F 4 "
            b"/DA (/F1 14 Tf 0 g) /Contents (%s) >>" % amount.encode("latin-1"),
            stream(
                appearance,
                b"/Type /XObject /Subtype /Form /BBox [0 0 200 25] /Resources << /Font << /F1 5 0 R >> >>",
            ),
        ]
    )
