"""The invoice generator itself: reproducible, consistent truth, and the variety it promises."""

from __future__ import annotations

from decimal import Decimal

import pypdfium2

from tests.vision.ocr.invoice_gen import (
    DAMAGES,
    LAYOUTS,
    chinese_uppercase,
    generate,
    page_images,
    sample,
)
from vision.ocr.normalize import parse_chinese_amount


def test_same_seed_same_file_and_truth() -> None:
    a, b = generate(7, "right_box", "photo"), generate(7, "right_box", "photo")
    assert a.data == b.data and a.truth == b.truth
    assert generate(8, "right_box", "photo").data != a.data


def test_truth_adds_up_and_matches_the_drawn_file() -> None:
    for seed, layout, damage in sample(len(LAYOUTS) * len(DAMAGES), 5):
        invoice = generate(seed, layout, damage)
        t = invoice.truth
        assert 1 <= len(t.items) <= 8
        assert t.subtotal == sum((x.amount for x in t.items), Decimal("0"))
        assert t.total == t.subtotal + t.tax and t.tax > 0
        assert all(x.amount == (x.quantity * x.unit_price).quantize(Decimal("0.01")) for x in t.items)
        if layout == "multipage":
            assert invoice.mime == "application/pdf"
            assert len(pypdfium2.PdfDocument(invoice.data)) == 2 == len(page_images(invoice))
        elif damage == "clean":
            assert invoice.mime == "image/png"
        else:
            assert invoice.mime == "image/jpeg" and 35 <= t.jpeg_quality <= 60
            assert 100 <= t.dpi <= 150
        if damage == "photo":
            assert -3 <= t.rotation <= 3
        if layout.startswith("fapiao"):
            assert t.currency == "CNY" and t.due_date is None


def test_sample_covers_every_layout_and_damage_and_the_wording_varies() -> None:
    samples = sample(120, 3)
    assert {(layout, damage) for _, layout, damage in samples} == {(x, d) for x in LAYOUTS for d in DAMAGES}
    truths = [generate(seed, layout, damage).truth for seed, layout, damage in samples[:42]]
    assert len({t.currency for t in truths}) == 4
    assert len({t.date_format for t in truths}) >= 5
    assert any(t.due_date for t in truths) and any(t.due_date is None for t in truths)
    assert len({t.seller for t in truths}) >= 35


def test_chinese_uppercase_amounts_round_trip() -> None:
    assert chinese_uppercase(Decimal("26842.07")) == "贰万陆仟捌佰肆拾贰圆零柒分"
    assert chinese_uppercase(Decimal("1010.00")) == "壹仟零壹拾圆整"
    for value in ("0.50", "7.00", "10.01", "100000.50", "123456789.99", "20304.05"):
        assert parse_chinese_amount(chinese_uppercase(Decimal(value))) == Decimal(value)
