"""Scoring the layout extractor on generated invoices: which key fields it got exactly, and whether
each wrong one was flagged for the reviewer. Shared by the accuracy test and
`python -m bench invoice-accuracy`.

A field counts as right when its JSON value equals the truth exactly (ISO date, cents as a string,
the name as printed; a field absent from the page must come back null). A wrong field is *caught*
when the extraction flags it (any flag naming it: missing, low_confidence, check_failed,
ambiguous_date, ...); a wrong field that is not caught is *silent*, the error a reviewer would not
see.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tests.vision.ocr.invoice_gen import KEY_FIELDS, GeneratedInvoice, generate, page_images
from tests.vision.ocr.scoring import grouped
from tests.vision.ocr.scoring import tally as tally_fields
from vision.ocr.engine import OcrResult


@dataclass
class FieldScore:
    name: str
    expected: str | None
    got: str | None
    right: bool
    flagged: bool
    confidence: float | None


@dataclass
class PageScore:
    name: str
    layout: str
    damage: str
    fields: list[FieldScore]
    ocr_s: float

    @property
    def silent(self) -> list[FieldScore]:
        return [f for f in self.fields if not f.right and not f.flagged]


def _cache_path(image, cache_dir: Path) -> Path:
    return cache_dir / f"{hashlib.sha256(image.tobytes() + repr(image.size).encode()).hexdigest()[:32]}.json"


def is_cached(invoice: GeneratedInvoice, cache_dir: Path) -> bool:
    return all(_cache_path(image, cache_dir).is_file() for image in page_images(invoice))


def ocr_pages(invoice: GeneratedInvoice, cache_dir: Path | None = None) -> list[OcrResult]:
    """OCR every page; with `cache_dir`, results are kept by the hash of the page's pixels (OCR
    of a few hundred pages takes ~10 minutes on two quiet cores; the extractor takes milliseconds)."""
    from vision.ocr.engine import ocr_image

    out = []
    for image in page_images(invoice):
        path = None
        if cache_dir is not None:
            path = _cache_path(image, cache_dir)
            if path.is_file():
                out.append(OcrResult.from_dict(json.loads(path.read_text())))
                continue
        result = ocr_image(image)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result.to_dict()))
        out.append(result)
    return out


def score(invoice: GeneratedInvoice, ocr: list[OcrResult]) -> PageScore:
    from vision.ocr.invoice import extract_invoice_pages

    result = extract_invoice_pages(ocr).to_dict()
    flagged = {f["field"] for f in result["flags"]}
    fields = []
    for name, want in invoice.truth.key_fields().items():
        got = result.get(name)
        fields.append(
            FieldScore(name, want, got, got == want, name in flagged, result["confidence"].get(name))
        )
    t = invoice.truth
    return PageScore(invoice.name, t.layout, t.damage, fields, sum(x.elapsed_s for x in ocr))


def _evaluate_one(args: tuple[tuple[int, str, str], Path | None, bool]) -> PageScore | None:
    (seed, layout, damage), cache_dir, only_cached = args
    invoice = generate(seed, layout, damage)
    if only_cached and cache_dir is not None and not is_cached(invoice, cache_dir):
        return None
    return score(invoice, ocr_pages(invoice, cache_dir))


def evaluate(
    samples: list[tuple[int, str, str]],
    cache_dir: Path | None = None,
    *,
    only_cached: bool = False,
    workers: int = 1,
) -> list[PageScore]:
    """Score every sample, in sample order; with `only_cached`, only those whose pages are all in
    the OCR cache (chosen by what was OCR'd in time, never by the result). `workers` > 1 spreads
    generation and scoring over processes (each OCRs with its own engine)."""
    jobs = [(s, cache_dir, only_cached) for s in samples]
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_evaluate_one, jobs, chunksize=1)
    else:
        results = [_evaluate_one(job) for job in jobs]
    return [r for r in results if r is not None]


def accuracy(scores: list[PageScore]) -> float:
    fields = [f for s in scores for f in s.fields]
    return sum(f.right for f in fields) / max(1, len(fields))


def summarize(scores: list[PageScore]) -> dict:
    """Overall, per field, per layout, per damage class and per layout × field: right / total."""

    def tally(groups: dict[str, list[FieldScore]]) -> dict[str, dict]:
        return {key: tally_fields(fields) for key, fields in sorted(groups.items())}

    every = [f for s in scores for f in s.fields]
    by_field = grouped(scores, lambda s, f: f.name)
    by_layout = grouped(scores, lambda s, f: s.layout)
    by_damage = grouped(scores, lambda s, f: s.damage)
    by_layout_field = grouped(scores, lambda s, f: f"{s.layout}/{f.name}")
    by_damage_field = grouped(scores, lambda s, f: f"{s.damage}/{f.name}")
    wrong = [f for f in every if not f.right]
    return {
        "pages": len(scores),
        "fields": len(every),
        "overall": tally({"all": every})["all"],
        "wrong": len(wrong),
        "wrong_flagged": sum(f.flagged for f in wrong),
        "right_flagged": sum(f.flagged for f in every if f.right),
        "by_field": tally(by_field),
        "by_layout": tally(by_layout),
        "by_damage": tally(by_damage),
        "by_layout_field": tally(by_layout_field),
        "by_damage_field": tally(by_damage_field),
        "key_fields": list(KEY_FIELDS),
        "misses": [
            {"page": s.name, "field": f.name, "expected": f.expected, "got": f.got, "flagged": f.flagged}
            for s in scores
            for f in s.fields
            if not f.right
        ],
    }
