"""The layout extractor on generated invoices it was not written against: one invoice of every
layout × damage pair (7 × 3 = 21, multi-page PDFs rendered through pdfium like an upload), OCR'd
from scratch here, no cache.

The bound is the issue's: at least 95 % of the key fields exact, and every wrong field flagged for
the reviewer (a silent error is the one a reviewer would not see). The full report over a few
hundred pages is `python -m bench invoice-accuracy` (bench/results/invoice-accuracy.md).
"""

from __future__ import annotations

import pytest

from tests.vision.ocr.invoice_accuracy import accuracy, evaluate, summarize
from tests.vision.ocr.invoice_gen import DAMAGES, LAYOUTS, sample

SEED = 2026
N = len(LAYOUTS) * len(DAMAGES)  # 24 pages, ~2-3 s each on two quiet cores: about a minute
KEY_FIELD_BOUND = 0.95


# OCR is CPU-bound: on two cores shared with other test runs (load average 20-28) it has taken
# 40 s a page, so this test gets more than the suite's 300 s default.
@pytest.mark.timeout(1800)
def test_key_fields_of_generated_invoices_are_exact_or_flagged() -> None:
    samples = sample(N, SEED)
    assert {(layout, damage) for _, layout, damage in samples} == {(x, d) for x in LAYOUTS for d in DAMAGES}
    scores = evaluate(samples)
    report = summarize(scores)
    print({k: report[k] for k in ("overall", "wrong", "wrong_flagged")}, report["misses"])
    assert accuracy(scores) >= KEY_FIELD_BOUND, report["misses"]
    silent = [(s.name, f.name, f.expected, f.got) for s in scores for f in s.silent]
    assert not silent, silent
