"""`python -m bench textlayer`: born-digital pages read from their text layer vs OCR'd.

Draws `--n` of the invoice generator's invoices (tests/vision/ocr/invoice_gen.py, Latin layouts,
clean) as born-digital PDFs (tests/vision/ocr/pdfgen.py: the same words at the same places as
PDF text), renders each page as the upload does (pdfium, 150 dpi), then reads every page both
ways in the same process, interleaved, warm engine:
- text layer: `vision.ocr.textlayer` (pdfium characters → cells, plus the sampled-word check
  against the pixels that decides the page can be trusted), from the PDF's bytes;
- OCR: RapidOCR on the rendered page (`vision.ocr.engine.ocr_image`).
Reports seconds per page for each, the ratio (goal: text layer >= 5x faster), how far the two
texts agree (character similarity of the page texts), and the invoice reader's key-field
accuracy on both readings (tests/vision/ocr/invoice_accuracy.py scoring). Run it on a quiet
machine: both sides are CPU-bound.
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import time
from pathlib import Path

from .common import RunInfo, git_commit, machine_description, machine_markdown, md_table, write_results
from .machine import measure_memory_bandwidth


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=20, help="invoices (multi-page ones add pages)")
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--rounds", type=int, default=1, help="times each page is read each way")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--tag", default="")


def _similarity(a: str, b: str) -> float:
    def norm(text: str) -> str:
        return " ".join(text.casefold().split())

    return difflib.SequenceMatcher(None, norm(a), norm(b), autojunk=False).ratio()


def run(args: argparse.Namespace) -> int:
    from tests.vision.ocr.invoice_accuracy import score
    from tests.vision.ocr.invoice_gen import KEY_FIELDS, GeneratedInvoice
    from tests.vision.ocr.pdfgen import BORN_DIGITAL_LAYOUTS, born_digital, render
    from vision.ocr.engine import get_ocr_engine, ocr_image
    from vision.ocr.textlayer import page_texts, read_page

    info = RunInfo(command="python -m bench textlayer " + " ".join(args.argv[1:]))
    info.git_commit = git_commit()
    info.machine = machine_description(measure_memory_bandwidth())
    engine = get_ocr_engine()
    rows, per_page, fields = [], [], {"text_layer": [], "ocr": []}
    warm = True
    for index in range(args.n):
        seed = args.seed * 1000 + index
        layout = BORN_DIGITAL_LAYOUTS[index % len(BORN_DIGITAL_LAYOUTS)]
        data, truth, _ = born_digital(seed, layout)
        images = render(data)
        if warm:  # the first call of each model loads it: not what a page costs
            read_page(images[0], page_texts(data, {1: images[0].size})[1], engine=engine)
            ocr_image(images[0])
            warm = False
        layer_pages, ocr_pages = [], []
        for number, image in enumerate(images, start=1):
            layer_s, ocr_s = [], []
            for _ in range(args.rounds):
                started = time.perf_counter()
                layer = read_page(image, page_texts(data, {number: image.size})[number], engine=engine)
                layer_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                ocr = ocr_image(image)
                ocr_s.append(time.perf_counter() - started)
            layer_pages.append(layer)
            ocr_pages.append(ocr)
            page = {
                "invoice": f"{seed}-{layout}",
                "page": number,
                "source": layer.source,
                "source_reason": layer.source_reason,
                "text_layer_s": statistics.median(layer_s),
                "ocr_s": statistics.median(ocr_s),
                "similarity": round(_similarity(layer.text, ocr.text), 4),
                "lines": [len(layer.lines), len(ocr.lines)],
                "rows": [len({x.row for x in layer.lines}), len({x.row for x in ocr.lines})],
            }
            per_page.append(page)
        invoice = GeneratedInvoice(truth, data, "application/pdf", images)
        for name, pages in (("text_layer", layer_pages), ("ocr", ocr_pages)):
            fields[name] += score(invoice, pages).fields
        rows.append(f"{seed}-{layout}")
    info.finish()

    layer_total = sum(p["text_layer_s"] for p in per_page)
    ocr_total = sum(p["ocr_s"] for p in per_page)
    ratio = ocr_total / layer_total if layer_total else 0.0
    ratios = [p["ocr_s"] / p["text_layer_s"] for p in per_page if p["text_layer_s"]]
    sources = [p["source"] for p in per_page]

    def accuracy(name: str) -> dict:
        got = fields[name]
        right = sum(f.right for f in got)
        silent = sum(not f.right and not f.flagged for f in got)
        by_field = {
            key: sum(f.right for f in got if f.name == key) / max(1, sum(f.name == key for f in got))
            for key in KEY_FIELDS
        }
        return {"right": right, "total": len(got), "silent": silent, "by_field": by_field}

    summary = {
        "pages": len(per_page),
        "invoices": len(rows),
        "text_layer_pages": sources.count("text_layer"),
        "text_layer_s_total": round(layer_total, 3),
        "ocr_s_total": round(ocr_total, 3),
        "text_layer_s_median": round(statistics.median(p["text_layer_s"] for p in per_page), 4),
        "ocr_s_median": round(statistics.median(p["ocr_s"] for p in per_page), 4),
        "ratio": round(ratio, 2),
        "ratio_min": round(min(ratios), 2) if ratios else None,
        "ratio_median": round(statistics.median(ratios), 2) if ratios else None,
        "goal_ratio": 5.0,
        "met": ratio >= 5.0 and sources.count("text_layer") == len(sources),
        "similarity_median": round(statistics.median(p["similarity"] for p in per_page), 4),
        "similarity_min": round(min(p["similarity"] for p in per_page), 4),
        "accuracy": {name: accuracy(name) for name in fields},
    }
    acc = summary["accuracy"]

    def pct(cell: dict) -> str:
        return f"{cell['right'] / max(1, cell['total']) * 100:.1f} % ({cell['right']}/{cell['total']})"

    lines = [
        "# Born-digital pages: text layer vs OCR",
        "",
        f"{len(per_page)} pages of {len(rows)} generated invoices drawn as born-digital PDFs "
        f"(seed {args.seed}; layouts {', '.join(BORN_DIGITAL_LAYOUTS)}), rendered at 150 dpi as uploads "
        f"are; each page read {args.rounds}x each way, interleaved, engines warm (median per page). "
        "Text layer = pdfium characters → cells plus the check of 5 sampled words against the pixels "
        "(recogniser only); OCR = RapidOCR PP-OCRv6 small on the rendered page.",
        "",
        f"**Text layer {ratio:.1f}x faster than OCR** (goal >= 5x; "
        f"{'met' if summary['met'] else 'missed'}): {layer_total:.2f} s vs {ocr_total:.2f} s in all, "
        f"median page {summary['text_layer_s_median']:.3f} s vs {summary['ocr_s_median']:.3f} s, "
        f"per-page ratio min {summary['ratio_min']}x, median {summary['ratio_median']}x. "
        f"{summary['text_layer_pages']} of {len(per_page)} pages were read from their text layer.",
        "",
        f"Text agreement (character similarity of the page texts, text layer vs OCR): median "
        f"{summary['similarity_median']:.3f}, min {summary['similarity_min']:.3f}.",
        "",
        "## Invoice key fields (layout extractor, no VLM)",
        "",
        md_table(
            ["reading", "exact", "silent errors", *KEY_FIELDS],
            [
                [name, pct(cell), cell["silent"], *[f"{cell['by_field'][k] * 100:.0f}" for k in KEY_FIELDS]]
                for name, cell in acc.items()
            ],
        ),
        "",
        "## Pages",
        "",
        md_table(
            [
                "invoice",
                "page",
                "source",
                "text layer s",
                "OCR s",
                "ratio",
                "similarity",
                "lines tl/ocr",
                "rows tl/ocr",
            ],
            [
                [
                    p["invoice"],
                    p["page"],
                    p["source"],
                    f"{p['text_layer_s']:.3f}",
                    f"{p['ocr_s']:.3f}",
                    f"{p['ocr_s'] / p['text_layer_s']:.1f}" if p["text_layer_s"] else "–",
                    f"{p['similarity']:.3f}",
                    f"{p['lines'][0]}/{p['lines'][1]}",
                    f"{p['rows'][0]}/{p['rows'][1]}",
                ]
                for p in per_page
            ],
        ),
        "",
        machine_markdown(info.machine),
        "",
        f"Load average {info.loadavg_start} → {info.loadavg_end}; commit {info.git_commit}.",
    ]
    markdown = "\n".join(lines)
    data = {"run": info.to_dict(), "summary": summary, "pages": per_page}
    json_path, md_path = write_results("textlayer", args.tag, data, markdown, args.out)
    print(markdown)
    print(f"\nwrote {json_path} and {md_path}")
    return 0
