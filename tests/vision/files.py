"""Upload fixtures made in the tests: good images and PDFs, and every kind of bad file."""

from __future__ import annotations

import io
import struct
import zlib

import pypdfium2
from PIL import Image

# The EICAR anti-virus test string: harmless, and detected by every scanner on purpose.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), color: str = "red", **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def noisy_jpeg(size: tuple[int, int] = (256, 256)) -> bytes:
    import random

    rng = random.Random(0)
    image = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def halves_jpeg_with_orientation(orientation: int) -> bytes:
    """80x40: left half red, right half blue, with an EXIF Orientation tag."""
    image = Image.new("RGB", (80, 40), "blue")
    image.paste(Image.new("RGB", (40, 40), "red"), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header declares width x height pixels:
    decoding it would need width * height bytes of memory."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\0" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_with_text(text: bytes) -> bytes:
    """A real PNG carrying `text` in a tEXt chunk (used to smuggle EICAR into an image)."""
    data = image_bytes("PNG")
    end = data.rindex(b"IEND") - 4
    return data[:end] + _png_chunk(b"tEXt", b"Comment\0" + text) + data[end:]


def pdf_bytes(pages: int = 2, size_pt: tuple[float, float] = (595, 842)) -> bytes:
    pdf = pypdfium2.PdfDocument.new()
    try:
        for _ in range(pages):
            pdf.new_page(*size_pt)
        buffer = io.BytesIO()
        pdf.save(buffer)
        return buffer.getvalue()
    finally:
        pdf.close()


HTML_AS_PNG = (
    b"<!DOCTYPE html><html><head><title>x</title></head><body><script>alert(1)</script></body></html>"
)
SVG_AS_PNG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(1)</script></svg>"
)


def heic_bytes(
    size: tuple[int, int] = (80, 40), *, orientation: int | None = None, noise: bool = False
) -> bytes:
    """A real HEIC file encoded by pillow-heif (libheif + x265): left half red, right half blue,
    or random noise (so that truncating it cuts the coded pixels); optionally an EXIF Orientation."""
    import random

    import pillow_heif

    pillow_heif.register_heif_opener()
    if noise:
        rng = random.Random(0)
        image = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    else:
        image = Image.new("RGB", size, "blue")
        image.paste(Image.new("RGB", (size[0] // 2, size[1]), "red"), (0, 0))
    save = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        save["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format="HEIF", quality=90, **save)
    return buffer.getvalue()
