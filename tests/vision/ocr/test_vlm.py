"""The VLM layer with scripted answers: strict parsing, normalisation and disagreement flags.
These answers stand in for the model only to test this code; they say nothing about the model.
The model's answers are constrained to INVOICE_SCHEMA, so scripted answers are schema-valid too.
The last test runs the whole path once through the real engine with the tiny random checkpoint."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from tests.vision.ocr.test_invoice import _page
from vision.ocr.invoice import SCALAR_FIELDS, extract_invoice
from vision.ocr.vlm import INVOICE_SCHEMA, cross_check, invoice_prompt, normalize_answer, parse_answer


def answer(**fields) -> str:
    """A schema-valid answer: the given fields, null (or no items) for the rest."""
    return json.dumps({**dict.fromkeys(SCALAR_FIELDS), "items": [], **fields})


def test_a_valid_answer_parses_and_normalises() -> None:
    parsed = parse_answer(
        answer(
            total=1200,
            currency="EUR",
            items=[{"description": "Bolts", "quantity": 2, "unit_price": 600, "amount": 1200}],
        )
    )
    assert parsed is not None
    fields = normalize_answer(parsed).fields
    assert fields["total"] == Decimal("1200.00")
    assert fields["currency"] == "EUR"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot read this image.",
        '{"total": 1200, "currency": "EUR"}',  # keys missing: not what the constraint lets out
        answer(total="1,200.00"),  # an amount as text
        answer(currency="eur"),
        answer(invoice_date="15/03/2024"),
        answer(total=1200)[:-5],  # cut off at max_tokens
        "```json\n" + answer(total=1200) + "\n```",  # no repairs: constrained answers have no fences
    ],
)
def test_anything_but_a_complete_schema_answer_is_refused(text) -> None:
    assert parse_answer(text) is None


def test_the_schema_is_a_valid_constraint() -> None:
    from vision.engine.constraints import ConstraintKind
    from vision.ocr.vlm import invoice_constraint

    constraint = invoice_constraint()
    assert constraint.kind == ConstraintKind.JSON_SCHEMA
    assert constraint.schema == INVOICE_SCHEMA
    assert set(INVOICE_SCHEMA["required"]) == {*SCALAR_FIELDS, "items"}


def test_normalises_dates_amounts_and_items() -> None:
    vlm = normalize_answer(
        {
            "Invoice Date": "15 March 2024",
            "due_date": "2024/04/14",
            "tax": "€ 200,00",
            "items": [
                {"description": " Bolts ", "quantity": "2", "unit_price": "12.5", "amount": "25"},
                "junk",
            ],
        }
    )
    assert vlm.fields["invoice_date"] == date(2024, 3, 15)
    assert vlm.fields["due_date"] == date(2024, 4, 14)
    assert vlm.fields["tax"] == Decimal("200.00")
    assert [(i.description, i.quantity, i.unit_price, i.amount) for i in vlm.items] == [
        ("Bolts", Decimal("2"), Decimal("12.50"), Decimal("25.00"))
    ]


@pytest.fixture
def layout_page():
    ocr = _page(
        [("Acme Supplies Ltd", 60, 400)],
        [("Invoice No: INV-7", 640, 1000)],
        [("Subtotal:", 640, 800), ("1,000.00", 900, 1040)],
        [("VAT (20%):", 640, 800), ("200.00", 900, 1040)],
        [("Total:", 640, 800), ("$1,200.00", 880, 1040)],
        [("Printed 2024-03-15 in Leeds", 60, 500)],
    )
    return ocr, extract_invoice(ocr)


def test_agreeing_answer_adds_no_flags(layout_page) -> None:
    ocr, layout = layout_page
    before = [f.code for f in layout.flags]
    text = answer(invoice_number="INV 7", seller="ACME Supplies Ltd.", total=1200, currency="USD")
    merged = cross_check(layout, ocr, text)
    assert [f.code for f in merged.flags] == before


def test_disagreement_is_flagged_and_layout_value_kept(layout_page) -> None:
    ocr, layout = layout_page
    merged = cross_check(layout, ocr, answer(total=1250.00, invoice_number="INV-7"))
    flags = [(f.field, f.code) for f in merged.flags]
    assert ("total", "vlm_disagrees") in flags and ("invoice_number", "vlm_disagrees") not in flags
    assert merged.value("total") == Decimal("1200.00")
    assert merged.fields["total"].confidence <= 0.6


def test_vlm_only_field_is_located_on_the_page(layout_page) -> None:
    ocr, layout = layout_page
    assert layout.value("invoice_date") is None  # no date label on this page
    merged = cross_check(layout, ocr, answer(invoice_date="2024-03-15", buyer="Nobody Ltd"))
    found = merged.fields["invoice_date"]
    assert found.value == date(2024, 3, 15) and found.source == "vlm" and found.confidence <= 0.5
    assert found.box is not None and found.box[1] == ocr.lines[-1].bbox[1]  # the "Printed ..." line
    assert merged.fields["buyer"].box is None  # not on the page at all
    assert {("invoice_date", "vlm_only"), ("buyer", "vlm_only")} <= {(f.field, f.code) for f in merged.flags}


def test_unparseable_answer_keeps_the_layout_result(layout_page) -> None:
    ocr, layout = layout_page
    values = {name: f.value for name, f in layout.fields.items()}
    merged = cross_check(layout, ocr, "garbage ĠĠ tokens")
    assert {name: f.value for name, f in merged.fields.items()} == values
    assert merged.flags[-1].code == "vlm_unparseable"


def test_prompt_carries_the_ocr_text(layout_page) -> None:
    ocr, _ = layout_page
    prompt = invoice_prompt(ocr)
    assert "Invoice No: INV-7" in prompt and "JSON" in prompt


def test_whole_path_with_the_tiny_checkpoint() -> None:
    """OCR → layout → the real engine with the tiny random checkpoint → cross-check. The random
    model knows nothing, but under the invoice constraint its answer is a valid invoice object;
    the layout result stands where the two disagree."""
    from tests.engine.conftest import build_cached_checkpoint
    from tests.vision.ocr.invoices import make_invoice
    from vision.engine import Engine, EngineConfig
    from vision.ocr.engine import ocr_image
    from vision.ocr.vlm import run_on_engine

    image, truth = make_invoice(41, "en")
    image = image.resize((image.width // 2, image.height // 2))
    ocr = ocr_image(image)
    layout = extract_invoice(ocr)
    engine = Engine(EngineConfig(model=str(build_cached_checkpoint("tiny")), dtype="fp32", threads=1))
    engine.load(timeout=120)
    try:
        text = run_on_engine(engine, image, ocr, max_tokens=2048)
        cut = run_on_engine(engine, image, ocr, max_tokens=24)
    finally:
        engine.shutdown()
    assert parse_answer(text) is not None, text
    merged = cross_check(layout, ocr, text)
    assert merged.value("invoice_number") == truth.invoice_number
    assert "vlm_unparseable" not in {f.code for f in merged.flags}
    assert parse_answer(cut) is None  # 24 tokens cannot hold the whole object
    assert "vlm_unparseable" in {f.code for f in cross_check(extract_invoice(ocr), ocr, cut).flags}
