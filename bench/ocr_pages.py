"""`python -m bench ocr`'s pages and their truth text: the generator's invoices (the strings drawn
on each page, recorded while it is generated) and the real born-digital PDFs rendered with pdfium
(the page's own text layer)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image

from .ocr_engines import TESS_LANG

GROUPS = ("english", "chinese", "photos", "pdf-150", "pdf-200")
LATIN_LAYOUTS = ("right_box", "label_table", "stacked", "receipt")
CHINESE_LAYOUTS = ("fapiao_grid", "fapiao_stacked")


@dataclass
class Page:
    name: str
    group: str
    language: str  # en, zh, de, ...
    image: Image.Image
    truth: str


@contextlib.contextmanager
def _recording_canvas():
    """Record every string the generator draws, per canvas in creation order (one canvas a page)."""
    from tests.vision.ocr import invoice_gen

    canvases: list[list[str]] = []
    original_init, original_text = invoice_gen.Canvas.__init__, invoice_gen.Canvas.text

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._bench_texts = []
        canvases.append(self._bench_texts)

    def text(self, x, y, text, *args, **kwargs):
        self._bench_texts.append(text)
        return original_text(self, x, y, text, *args, **kwargs)

    invoice_gen.Canvas.__init__, invoice_gen.Canvas.text = init, text
    try:
        yield canvases
    finally:
        invoice_gen.Canvas.__init__, invoice_gen.Canvas.text = original_init, original_text


def _generated(seed: int, layout: str, damage: str, group: str) -> list[Page]:
    from tests.vision.ocr.invoice_gen import generate

    with _recording_canvas() as canvases:
        invoice = generate(seed, layout, damage)
    if len(canvases) != len(invoice.pages):
        raise RuntimeError(f"{invoice.name}: {len(canvases)} canvases for {len(invoice.pages)} pages")
    language = "zh" if layout.startswith("fapiao") else "en"
    return [
        Page(f"{invoice.name}-p{number}", group, language, image, "\n".join(texts))
        for number, (image, texts) in enumerate(zip(invoice.pages, canvases, strict=True), start=1)
    ]


def _rendered(path: Path, doc_id: str, language: str, index: int, dpi: int) -> list[Page]:
    """Page `index` of a PDF rendered at `dpi`, its truth the page's text layer (none if it has
    no usable text layer: nothing to score against)."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(path.read_bytes())
    try:
        if index >= len(pdf):
            return []
        page = pdf[index]
        textpage = page.get_textpage()
        truth = textpage.get_text_range()
        textpage.close()
        if len(truth.split()) < 5:
            return []
        bitmap = page.render(scale=dpi / 72, fill_color=(255, 255, 255, 255))
        image = bitmap.to_pil().convert("RGB")
        bitmap.close()
        page.close()
    finally:
        pdf.close()
    return [Page(f"{doc_id}-p{index + 1}@{dpi}", f"pdf-{dpi}", language, image, truth)]


def page_plan(seed: int, groups: set[str], per_pdf: int) -> list[tuple[str, Callable[[], list[Page]]]]:
    """(group, make the pages) for every page source, in order; nothing is drawn or rendered yet."""
    from tests.vision.ocr.real_corpus import load_corpus

    plan: list[tuple[str, Callable[[], list[Page]]]] = []
    # every generated page in a fixed order, so a page's seed does not depend on --groups
    generated = [(layout, damage, "english") for damage in ("clean", "scan") for layout in LATIN_LAYOUTS]
    generated += [(layout, damage, "chinese") for damage in ("clean", "scan") for layout in CHINESE_LAYOUTS]
    generated += [
        (layout, "photo", "photos") for layout in ("right_box", "label_table", "receipt", "fapiao_grid")
    ]
    for index, (layout, damage, group) in enumerate(generated):
        if group in groups:
            plan.append((group, partial(_generated, seed * 1000 + index, layout, damage, group)))
    dpis = [dpi for dpi in (150, 200) if f"pdf-{dpi}" in groups]
    for doc in load_corpus() if dpis else []:
        if doc.kind not in ("pdf", "pdf+xml") or doc.language not in TESS_LANG:
            continue
        for index in range(per_pdf):
            for dpi in dpis:
                plan.append((f"pdf-{dpi}", partial(_rendered, doc.path, doc.id, doc.language, index, dpi)))
    return plan


def collect_pages(seed: int, groups: set[str], per_pdf: int, limit: int = 0) -> list[Page]:
    """The pages; with `limit`, the first of each group first (a smoke run sees every group)."""
    plan = page_plan(seed, groups, per_pdf)
    if not limit:
        return [page for _, make in plan for page in make()]
    pages: list[Page] = []
    done: set[int] = set()
    for group in GROUPS:  # a source can give no page (a PDF without text layer): take the next
        for index, (g, make) in enumerate(plan):
            if g == group and len(pages) < limit:
                done.add(index)
                got = make()
                if got:
                    pages += got
                    break
    for index, (_, make) in enumerate(plan):
        if len(pages) >= limit:
            break
        if index not in done:
            pages += make()
    return pages[:limit]
