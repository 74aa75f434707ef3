"""`manage.py extract FILE [FILE...] --task ocr|invoice [--no-vlm] [--json]`

An invoice is read over all the pages of a PDF (totals on the last page); OCR prints the first page.
A PDF page with a trustworthy text layer is read from it, not OCR'd (vision/ocr/textlayer.py); the
output's `source` (OCR) or `page.sources` (invoice) says which.

Runs the pipeline the `ocr` and `invoice` jobs run (vision.ocr.pipeline) on local files, without
a web server, a worker or a database. With the VLM cross-check (invoice, without `--no-vlm`) the
engine is loaded in this process from VISION_MODEL: the simplest path that cannot get stuck on a
queue, at the cost of the model's load time per command (a worker would keep it warm, but then
the command needs Redis and a running worker). `--no-vlm` needs neither torch nor a model, and
with VISION_MODEL=none (an OCR-only deployment) the command works as if it were given.

Prints one JSON object per file (indented; one line each with `--json`, for scripts). A file that
cannot be read gives {"file", "error"} and the others still run; the exit code is 1 if any failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from PIL import Image, ImageOps, UnidentifiedImageError

from vision.capabilities import model_disabled_reason


class FileRejected(Exception):
    pass


def load_pages(path: Path) -> list[Image.Image]:
    """The pages of an image (first frame) or PDF file (up to UPLOAD_PDF_MAX_PAGES), as RGB;
    FileRejected with a readable reason."""
    return [image for image, _ in read_pages(path, read=False)]


def read_pages(path: Path, *, read: bool = True, first_only: bool = False) -> list[tuple[Image.Image, Any]]:
    """The pages of `path` (as `load_pages`; only the first with `first_only`), each with its
    reading (an OcrResult; None unless `read`): a PDF's pages from their text layer where it
    agrees with the pixels (vision/ocr/textlayer.py, as jobs read uploads), the rest by OCR."""
    if not path.is_file():
        raise FileRejected("no such file")
    head = path.open("rb").read(5)
    if head == b"%PDF-":
        import pypdfium2

        from vision.ocr.pdf_render import render_page

        try:
            pdf = pypdfium2.PdfDocument(str(path))
        except pypdfium2.PdfiumError as exc:
            raise FileRejected(f"not a readable PDF ({exc})") from exc
        try:
            count = min(len(pdf), 1 if first_only else settings.UPLOAD_PDF_MAX_PAGES)
            if not count:
                raise FileRejected("the PDF has no pages")
            images = [
                render_page(pdf[i], dpi=settings.UPLOAD_PDF_DPI, max_pixels=settings.UPLOAD_MAX_PIXELS)
                for i in range(count)
            ]
        except pypdfium2.PdfiumError as exc:
            raise FileRejected(f"not a readable PDF ({exc})") from exc
        finally:
            pdf.close()
        if not read:
            return [(image, None) for image in images]
        from vision.ocr.textlayer import read_pdf_pages

        readings = read_pdf_pages(path.read_bytes(), dict(enumerate(images, start=1)))
        return [(image, readings[number]) for number, image in enumerate(images, start=1)]
    import pillow_heif  # HEIC/HEIF phone photos, as uploads accept them

    pillow_heif.register_heif_opener()
    try:
        with Image.open(path) as image:
            image.load()
            page = ImageOps.exif_transpose(image).convert("RGB")
    except Image.DecompressionBombError as exc:
        raise FileRejected(f"image too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FileRejected(f"not a readable image ({type(exc).__name__}: {exc})") from exc
    if not read:
        return [(page, None)]
    from vision.ocr.engine import ocr_image

    return [(page, ocr_image(page))]


class Command(BaseCommand):
    help = "OCR or extract invoice fields from local image/PDF files and print JSON per file."

    def add_arguments(self, parser) -> None:
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--task", choices=["ocr", "invoice"], default="invoice")
        parser.add_argument("--no-vlm", action="store_true", help="layout extractor only: no model")
        parser.add_argument("--json", action="store_true", help="one compact JSON object per line")
        parser.add_argument("--max-tokens", type=int, default=512, help="VLM answer length")

    def handle(self, *args: Any, **options: Any) -> None:
        from vision.ocr.pipeline import read_invoice_pages

        ask_model, engine = None, None
        disabled = model_disabled_reason(engine="on", model=settings.VISION_MODEL)
        if options["task"] == "invoice" and not options["no_vlm"] and disabled:
            self.stderr.write(f"{disabled}: extracting with the layout extractor alone (as --no-vlm)")
        elif options["task"] == "invoice" and not options["no_vlm"]:
            engine = self._engine()
            ask_model = self._asker(engine, options["max_tokens"])
        failed = 0
        try:
            for path in options["files"]:
                out: dict[str, Any] = {"file": str(path)}
                try:
                    pages = read_pages(path, first_only=options["task"] == "ocr")
                    if options["task"] == "ocr":
                        out |= pages[0][1].to_dict()
                    else:
                        images, readings = [p[0] for p in pages], [p[1] for p in pages]
                        out |= read_invoice_pages(images, ask_model=ask_model, readings=readings).to_dict()
                except FileRejected as exc:
                    failed += 1
                    out["error"] = f"{path}: {exc}"
                    self.stderr.write(f"error: {path}: {exc}")
                self.stdout.write(json.dumps(out, ensure_ascii=False, indent=None if options["json"] else 2))
        finally:
            if engine is not None:
                engine.shutdown()
        if failed:
            sys.exit(1)

    def _engine(self):
        from vision.engine import Engine, EngineConfig, EngineNotReady

        config = EngineConfig(
            model=settings.VISION_MODEL, dtype=settings.VISION_DTYPE, threads=settings.VISION_THREADS
        )
        self.stderr.write(f"loading {settings.VISION_MODEL} for the VLM cross-check (--no-vlm skips it)")
        try:
            return Engine(config).load(timeout=1800)
        except EngineNotReady as exc:
            raise CommandError(
                f"the model could not be loaded: {exc}. Use --no-vlm to extract without it."
            ) from exc

    @staticmethod
    def _asker(engine, max_tokens: int):
        from vision.ocr.pipeline import ModelFailed
        from vision.ocr.vlm import run_on_engine

        def ask(image: Image.Image, ocr) -> str:
            try:
                return run_on_engine(engine, image, ocr, max_tokens=max_tokens)
            except RuntimeError as exc:
                raise ModelFailed(str(exc)) from exc

        return ask
