"""The invoice generator's damage classes (`clean`, `scan`, `photo`: tilt, perspective, lighting,
blur, noise, lower dpi) and the upload's encoding (PNG, JPEG, or a PDF of several pages)."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageFilter

from tests.vision.ocr.invoice_gen_truth import BASE_DPI, Truth


def _to_dpi(image: Image.Image, dpi: int) -> Image.Image:
    if dpi == BASE_DPI:
        return image
    scale = dpi / BASE_DPI
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)


def _noise(image: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    array = np.asarray(image, dtype=np.float32)
    array = array + rng.normal(0, sigma, array.shape[:2])[..., None]
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _lighting(image: Image.Image, rng: random.Random) -> Image.Image:
    """A shadow falling across the page: brightness from `low` to 1 along a random direction."""
    w, h = image.size
    angle = rng.uniform(0, 2 * np.pi)
    low = rng.uniform(0.55, 0.8)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.cos(angle) * xs / w + np.sin(angle) * ys / h
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    gain = low + (1 - low) * ramp
    array = np.asarray(image, dtype=np.float32) * gain[..., None]
    tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 0.97)], dtype=np.float32)
    return Image.fromarray(np.clip(array * tint, 0, 255).astype(np.uint8))


def _perspective(image: Image.Image, rng: random.Random, amount: float) -> Image.Image:
    w, h = image.size
    j = [rng.uniform(-amount, amount) for _ in range(8)]
    src = [
        (0 + j[0] * w, 0 + j[1] * h),
        (w + j[2] * w, 0 + j[3] * h),
        (w + j[4] * w, h + j[5] * h),
        (0 + j[6] * w, h + j[7] * h),
    ]
    dst = [(0, 0), (w, 0), (w, h), (0, h)]
    coeffs = _perspective_coeffs(dst, src)
    return image.transform((w, h), Image.PERSPECTIVE, coeffs, Image.BICUBIC, fillcolor=(235, 235, 230))


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, dtype=np.float64)
    b = np.array([c for point in src for c in point], dtype=np.float64)
    return np.linalg.solve(a, b).tolist()


def damage_page(page: Image.Image, damage: str, rng: random.Random, truth: Truth) -> Image.Image:
    if damage == "clean":
        return page
    nrng = np.random.default_rng(rng.randrange(2**32))
    if damage == "scan":
        angle = rng.uniform(-0.8, 0.8)
        page = page.rotate(angle, resample=Image.BICUBIC, expand=False, fillcolor="white")
        page = Image.fromarray(
            (np.asarray(page, dtype=np.float32) * rng.uniform(0.88, 0.97)).astype(np.uint8)
        )
        page = _to_dpi(page, truth.dpi)
        return _noise(page, nrng, rng.uniform(3, 7))
    if damage == "photo":
        angle = truth.rotation
        page = page.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=(230, 230, 225))
        page = _perspective(page, rng, rng.uniform(0.01, 0.03))
        page = _lighting(page, rng)
        page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9)))
        page = _to_dpi(page, truth.dpi)
        return _noise(page, nrng, rng.uniform(4, 9))
    raise ValueError(damage)


def encode(pages: list[Image.Image], damage: str, truth: Truth) -> tuple[bytes, str, list[Image.Image]]:
    """The upload's bytes; the pages as a reader decodes them (JPEG artefacts included)."""
    decoded = []
    for page in pages:
        buffer = io.BytesIO()
        if damage == "clean":
            page.save(buffer, "PNG")
        else:
            page.save(buffer, "JPEG", quality=truth.jpeg_quality)
        decoded.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    if len(pages) > 1:
        buffer = io.BytesIO()
        decoded[0].save(buffer, "PDF", save_all=True, append_images=decoded[1:], resolution=float(truth.dpi))
        return buffer.getvalue(), "application/pdf", decoded
    buffer = io.BytesIO()
    if damage == "clean":
        decoded[0].save(buffer, "PNG")
        return buffer.getvalue(), "image/png", decoded
    pages[0].save(buffer, "JPEG", quality=truth.jpeg_quality)
    return buffer.getvalue(), "image/jpeg", decoded
