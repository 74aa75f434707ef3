"""One way to turn a PDF page into pixels (vision/ocr/pdf_render.py): the upload DPI, lowered for a
page whose pixels would pass the limit, transparency as white paper."""

from __future__ import annotations

import io

import pypdfium2
import pytest
from PIL import Image

from vision.ocr.pdf_render import on_white, page_scale, render_page


def test_the_scale_is_the_dpi_until_the_page_would_pass_the_pixel_limit() -> None:
    a4 = (595.0, 842.0)
    assert page_scale(*a4, dpi=150, max_pixels=50_000_000) == pytest.approx(150 / 72)
    lowered = page_scale(*a4, dpi=150, max_pixels=1_000_000)
    assert lowered < 150 / 72 and a4[0] * a4[1] * lowered**2 <= 1_000_000


def test_transparent_areas_are_white_paper_not_black() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.putpixel((1, 1), (200, 10, 10, 255))
    rgb = on_white(image)
    assert (
        rgb.mode == "RGB"
        and rgb.getpixel((0, 0)) == (255, 255, 255)
        and rgb.getpixel((1, 1)) == (200, 10, 10)
    )


def test_a_page_renders_at_the_dpi_and_its_size_is_checked_first() -> None:
    pdf = pypdfium2.PdfDocument.new()
    pdf.new_page(144, 72)  # 2 x 1 inch
    buffer = io.BytesIO()
    pdf.save(buffer)
    document = pypdfium2.PdfDocument(buffer.getvalue())
    seen = []
    image = render_page(document[0], dpi=100, max_pixels=10**8, check=lambda w, h: seen.append((w, h)))
    assert image.mode == "RGB" and image.size == (200, 100) and seen == [(200, 100)]

    def refuse(width: int, height: int) -> None:
        raise ValueError(f"{width}x{height} too large")

    with pytest.raises(ValueError, match="200x100"):
        render_page(document[0], dpi=100, max_pixels=10**8, check=refuse)
