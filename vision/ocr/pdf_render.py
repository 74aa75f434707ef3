"""A PDF page as the platform sees it: rendered at the upload DPI, at a lower one for a page so
large its pixels would pass the limit, transparent areas composited on white paper. One function
for uploads (vision/services/documents.py), `manage.py extract` and the readers of test corpora,
so all of them read the same pixels. No Django: the caller passes the settings."""

from __future__ import annotations

import math
from collections.abc import Callable

from PIL import Image

POINTS_PER_INCH = 72  # PDF sizes are in points


def page_scale(width_pt: float, height_pt: float, *, dpi: int, max_pixels: int) -> float:
    """Pixels per point: `dpi`, lowered so that the page stays under `max_pixels`."""
    scale = dpi / POINTS_PER_INCH
    if width_pt * height_pt * scale * scale > max_pixels:
        scale = math.sqrt(max_pixels / (width_pt * height_pt)) * 0.99
    return scale


def on_white(image: Image.Image) -> Image.Image:
    """The image in RGB, with transparent areas as white paper (not black); an RGB image is
    returned as it is (a rendered page passes here once, not twice)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, "white")
        rgb.paste(rgba, mask=rgba.getchannel("A"))
        return rgb
    return image if image.mode == "RGB" else image.convert("RGB")


def render_page(
    page, *, dpi: int, max_pixels: int, check: Callable[[int, int], None] | None = None
) -> Image.Image:
    """One pypdfium2 page as an RGB image; `check(width, height)` sees the bitmap's size before
    it becomes an image (an upload refuses one over its limits there)."""
    width_pt, height_pt = page.get_size()
    bitmap = page.render(scale=page_scale(width_pt, height_pt, dpi=dpi, max_pixels=max_pixels))
    try:
        if check is not None:
            check(bitmap.width, bitmap.height)
        return on_white(bitmap.to_pil())
    finally:
        bitmap.close()
