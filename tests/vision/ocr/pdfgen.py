"""Born-digital test PDFs written with pdfium's page-object API (pypdfium2, already a dependency):
text objects in an embedded TrueType font (DejaVu, Debian's fonts-dejavu-core), optionally drawn
invisible (render mode 3, as OCR tools write their text layer), over an optional full-page image
(a "scan"). Positions are given in the pixels of the page rendered at `dpi`, top-left origin, the
way a PIL drawing is; `Page.words` records where each run of text was put so tests can check boxes.
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
A4_PT = (595.0, 842.0)


@dataclass
class Text:
    x: float  # left edge, page pixels at `dpi`
    y: float  # top of the text as PIL draws it (the ascender line), page pixels
    text: str
    size: float  # font size in pixels at `dpi`
    bold: bool = False


@dataclass
class Page:
    texts: list[Text] = field(default_factory=list)
    image: Image.Image | None = None  # drawn over the whole page, below the text
    invisible: bool = False  # text render mode 3 (no paint), as an OCR tool's text layer
    color: tuple[int, int, int] = (20, 20, 30)

    def text(self, x: float, y: float, text: str, size: float = 24, bold: bool = False) -> None:
        self.texts.append(Text(x, y, text, size, bold))


def _font_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def make_pdf(pages: list[Page], *, dpi: int = 150, size_pt: tuple[float, float] = A4_PT) -> bytes:
    """A PDF with one page per `Page`, `size_pt` points each."""
    scale = 72 / dpi
    pdf = pypdfium2.PdfDocument.new()
    fonts: dict[bool, tuple[object, object]] = {}
    try:
        for spec in pages:
            page = pdf.new_page(*size_pt)
            if spec.image is not None:
                image = pypdfium2.PdfImage.new(pdf)
                buffer = io.BytesIO()
                spec.image.convert("RGB").save(buffer, "JPEG", quality=90)
                image.load_jpeg(io.BytesIO(buffer.getvalue()), inline=False)
                image.set_matrix(pypdfium2.PdfMatrix().scale(*size_pt))
                page.insert_obj(image)
            for text in spec.texts:
                if text.bold not in fonts:
                    data = _font_bytes(FONT_BOLD if text.bold else FONT)
                    cdata = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
                    handle = pdfium_c.FPDFText_LoadFont(
                        pdf, cdata, len(data), pdfium_c.FPDF_FONT_TRUETYPE, True
                    )
                    data = cdata
                    fonts[text.bold] = (handle, data)  # keep the bytes alive with the handle
                font = fonts[text.bold][0]
                face = ImageFont.truetype(FONT_BOLD if text.bold else FONT, round(text.size))
                ascent = face.getmetrics()[0] * text.size / round(text.size)
                obj = pdfium_c.FPDFPageObj_CreateTextObj(pdf, font, text.size * scale)
                encoded = (text.text + "\0").encode("utf-16-le")
                buf = ctypes.create_string_buffer(encoded, len(encoded))
                pdfium_c.FPDFText_SetText(obj, ctypes.cast(buf, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
                pdfium_c.FPDFPageObj_SetFillColor(obj, *spec.color, 255)
                if spec.invisible:
                    pdfium_c.FPDFTextObj_SetTextRenderMode(obj, pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE)
                baseline = size_pt[1] - (text.y + ascent) * scale
                pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, text.x * scale, baseline)
                pdfium_c.FPDFPage_InsertObject(page, obj)
            page.gen_content()
            page.close()
        out = io.BytesIO()
        pdf.save(out)
        return out.getvalue()
    finally:
        pdf.close()


def draw_page(page: Page, *, dpi: int = 150, size_pt: tuple[float, float] = A4_PT) -> Image.Image:
    """The page's texts drawn by PIL at `dpi` (a "scan" of what `make_pdf` would show)."""
    width, height = round(size_pt[0] * dpi / 72), round(size_pt[1] * dpi / 72)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for text in page.texts:
        face = ImageFont.truetype(FONT_BOLD if text.bold else FONT, round(text.size))
        draw.text((text.x, text.y), text.text, font=face, fill=page.color)
    return image


def render(data: bytes, dpi: int = 150) -> list[Image.Image]:
    """The pages as the upload renders them (vision/services/documents.py: pdfium at `dpi`)."""
    pdf = pypdfium2.PdfDocument(data)
    try:
        return [pdf[i].render(scale=dpi / 72).to_pil().convert("RGB") for i in range(len(pdf))]
    finally:
        pdf.close()
