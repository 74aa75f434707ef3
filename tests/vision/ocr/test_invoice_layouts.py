"""The layout extractor's rules on hand-made OCR lines (no OCR run): label synonyms, values right
of or below their label, distractor amounts, the date-order rule, fapiao grid cells, multi-page
documents, inferred amounts and the checks that lower a field's confidence."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from vision.ocr.engine import OcrLine, OcrResult, order_lines
from vision.ocr.invoice import LOW_CONFIDENCE, extract_invoice, extract_invoice_pages
from vision.ocr.labels import fix_legal_form


def _page(*rows: list[tuple[str, float, float]], confidence: float = 0.98) -> OcrResult:
    lines = []
    for n, row in enumerate(rows):
        for text, x0, x1 in row:
            y = 40 + 50 * n
            lines.append(
                OcrLine(text, ((x0, y), (x1, y), (x1, y + 28), (x0, y + 28)), (x0, y, x1, y + 28), confidence)
            )
    return OcrResult(1240, 1754, order_lines(lines))


def _flags(result) -> set[tuple[str, str]]:
    return {(f.field, f.code) for f in result.flags}


@pytest.mark.parametrize(
    ("number_label", "date_label", "total_label"),
    [
        ("Inv. Number:", "Issued:", "Amount due"),
        ("Bill No.", "Date of issue", "Balance due:"),
        ("Invoice #", "Invoice date", "Grand total"),
        ("Receipt no", "Date", "TOTAL DUE"),
    ],
)
def test_label_synonyms_and_a_previous_balance_beside_the_total(
    number_label, date_label, total_label
) -> None:
    ocr = _page(
        [("Kestrel Tools LLC", 60, 420), ("INVOICE", 900, 1100)],
        [(number_label, 700, 900), ("A-20931", 1000, 1140)],
        [(date_label, 700, 900), ("2026-03-11", 1000, 1140)],
        [("Order No. 55123", 700, 1000)],
        [("Total excl. VAT", 700, 900), ("1,000.00", 1000, 1140)],
        [("VAT 20 %", 700, 900), ("200.00", 1000, 1140)],
        [("Previous balance:", 700, 900), ("310.00", 1000, 1140)],
        [(total_label, 700, 900), ("$1,200.00", 1000, 1140)],
        [("Tel: +44 20 7946 0958", 60, 400), ("IBAN: GB29 NWBK 6016 1331 9268 19", 500, 1100)],
    )
    result = extract_invoice(ocr)
    assert result.value("seller") == "Kestrel Tools LLC"
    assert result.value("invoice_number") == "A-20931"
    assert result.value("invoice_date") == date(2026, 3, 11)
    assert (result.value("subtotal"), result.value("tax"), result.value("total")) == (
        Decimal("1000.00"),
        Decimal("200.00"),
        Decimal("1200.00"),
    )
    assert result.value("currency") == "USD"
    assert all(c.ok for c in result.checks) and {c.name for c in result.checks} >= {
        "tax_rate",
        "subtotal_plus_tax_total",
    }
    # The page is titled INVOICE but names no buyer: the one thing the reviewer is asked to check.
    assert _flags(result) == {("buyer", "missing")}


def test_values_below_their_labels_and_decimal_commas() -> None:
    ocr = _page(
        [("Blue Harbor GmbH", 60, 420)],
        [("INVOICE NO.", 60, 250), ("DATE", 330, 420), ("DUE DATE", 600, 740)],
        [("RE-204", 60, 170), ("11.03.2026", 330, 480), ("25.03.2026", 600, 750)],
        [("BILL TO", 60, 200)],
        [("Initech Systems B.V.", 60, 400)],
        [("Subtotal", 700, 900), ("1.234,56 €", 1000, 1140)],
        [("Tax (19%)", 700, 900), ("234,57 €", 1000, 1140)],
        [("Total", 700, 900), ("1.469,13 €", 1000, 1140)],
    )
    result = extract_invoice(ocr)
    assert result.value("invoice_number") == "RE-204"
    assert result.value("invoice_date") == date(2026, 3, 11)  # day-first: 25.03 settles the order
    assert result.value("due_date") == date(2026, 3, 25)
    assert result.value("buyer") == "Initech Systems B.V."
    assert result.value("total") == Decimal("1469.13") and result.value("currency") == "EUR"
    assert ("invoice_date", "ambiguous_date") not in _flags(result)


@pytest.mark.parametrize(("currency", "read"), [("$", date(2026, 11, 3)), ("£", date(2026, 3, 11))])
def test_an_unsettled_numeric_date_follows_the_currency_and_is_flagged(currency, read) -> None:
    ocr = _page(
        [("Acme Supplies Ltd", 60, 420)],
        [("Date: 11/03/2026", 700, 1100)],
        [("Total:", 700, 900), (f"{currency}99.00", 1000, 1140)],
    )
    result = extract_invoice(ocr)
    assert result.value("invoice_date") == read
    assert ("invoice_date", "ambiguous_date") in _flags(result)
    assert result.fields["invoice_date"].confidence < LOW_CONFIDENCE


def test_fapiao_grid_parties_split_sum_row_and_total_in_words() -> None:
    ocr = _page(
        [("发票号码：12345678901234567890", 1000, 1400)],
        [("开票日期：2026年03月11日", 1000, 1400)],
        [
            ("购", 60, 90),
            ("名称：北京星辰科技有限公司", 120, 500),
            ("销", 760, 790),
            ("名称：上海远航贸易有限公司", 820, 1200),
        ],
        [("买", 60, 90), ("纳税人识别号：91110108MA0123456G", 120, 600), ("售", 760, 790)],
        [
            ("项目名称", 60, 200),
            ("数量", 600, 660),
            ("单价", 760, 820),
            ("金额", 960, 1020),
            ("税率", 1100, 1160),
            ("税额", 1300, 1360),
        ],
        [
            ("*纸制品*打印纸", 60, 260),
            ("10", 620, 660),
            ("100.00", 740, 820),
            ("1000.00", 930, 1020),
            ("13%", 1110, 1160),
            ("130.00", 1290, 1360),
        ],
        [("合", 100, 130), ("计", 160, 190), ("¥1000.00", 920, 1020), ("¥130.00", 1280, 1360)],
        [("价税合计（大写）", 60, 300), ("ⓧ壹仟壹佰叁拾圆整", 340, 640), ("（小写）¥1130.00", 1000, 1300)],
    )
    result = extract_invoice(ocr)
    assert result.value("invoice_number") == "12345678901234567890"
    assert result.value("invoice_date") == date(2026, 3, 11)
    assert (
        result.value("buyer") == "北京星辰科技有限公司" and result.value("seller") == "上海远航贸易有限公司"
    )
    assert (result.value("subtotal"), result.value("tax"), result.value("total")) == (
        Decimal("1000.00"),
        Decimal("130.00"),
        Decimal("1130.00"),
    )
    assert result.value("currency") == "CNY"
    assert {c.name: c.ok for c in result.checks}["total_in_words"]
    assert len(result.items) == 1 and not result.flags


def test_a_misread_fapiao_total_is_caught_by_its_amount_in_words() -> None:
    ocr = _page(
        [("价税合计（大写）", 60, 300), ("ⓧ壹仟壹佰叁拾圆整", 340, 640), ("（小写）¥1180.00", 1000, 1300)],
    )
    result = extract_invoice(ocr)
    assert result.value("total") == Decimal("1180.00")
    assert not {c.name: c.ok for c in result.checks}["total_in_words"]
    assert ("total", "check_failed") in _flags(result)
    assert result.fields["total"].confidence < LOW_CONFIDENCE


def test_multi_page_identity_from_the_first_page_totals_from_the_last() -> None:
    first = _page(
        [("Meridian Print plc", 60, 420)],
        [("Invoice No:", 700, 900), ("INV-2026-0042", 950, 1140)],
        [("Invoice date:", 700, 900), ("March 11, 2026", 950, 1140)],
        [("Description", 60, 260), ("Qty", 600, 660), ("Unit price", 760, 900), ("Amount", 1040, 1140)],
        [("Toner cartridge", 60, 300), ("2", 640, 660), ("50.00", 840, 900), ("100.00", 1060, 1140)],
        [("Continued on next page", 800, 1140)],
    )
    last = _page(
        [("Meridian Print plc", 60, 300), ("Invoice No INV-2026-0042", 800, 1140)],
        [("Page 2 of 2", 960, 1140)],
        [("Description", 60, 260), ("Qty", 600, 660), ("Unit price", 760, 900), ("Amount", 1040, 1140)],
        [("Desk lamp", 60, 300), ("1", 640, 660), ("20.00", 840, 900), ("20.00", 1060, 1140)],
        [("Subtotal:", 700, 900), ("£120.00", 1040, 1140)],
        [("VAT (20%):", 700, 900), ("£24.00", 1040, 1140)],
        [("Total due:", 700, 900), ("£144.00", 1040, 1140)],
    )
    result = extract_invoice_pages([first, last])
    assert result.value("seller") == "Meridian Print plc" and result.fields["seller"].page == 1
    assert result.value("total") == Decimal("144.00") and result.fields["total"].page == 2
    assert result.value("invoice_date") == date(2026, 3, 11) and result.value("currency") == "GBP"
    assert [i.amount for i in result.items] == [Decimal("100.00"), Decimal("20.00")]
    assert all(c.ok for c in result.checks) and "items_sum_subtotal" in {c.name for c in result.checks}
    assert result.to_dict()["field_pages"]["total"] == 2


def test_a_wrong_tax_fails_the_rate_check_and_a_missing_total_is_inferred_and_flagged() -> None:
    ocr = _page(
        [("Acme Supplies Ltd", 60, 420)],
        [("Subtotal", 700, 900), ("EUR 500,00", 1000, 1140)],
        [("VAT 20 %", 700, 900), ("EUR 90,00", 1000, 1140)],
    )
    result = extract_invoice(ocr)
    assert result.value("total") == Decimal("590.00") and result.fields["total"].source == "inferred"
    assert not {c.name: c.ok for c in result.checks}["tax_rate"]
    assert {("tax", "check_failed"), ("subtotal", "check_failed"), ("total", "inferred")} <= _flags(result)
    assert all(result.fields[n].confidence < LOW_CONFIDENCE for n in ("subtotal", "tax", "total"))


def test_low_ocr_confidence_lowers_the_field_and_flags_it() -> None:
    ocr = _page([("Invoice No: INV-7", 60, 400)], [("Total: $10.00", 60, 400)], confidence=0.7)
    result = extract_invoice(ocr)
    assert result.fields["invoice_number"].confidence < LOW_CONFIDENCE
    assert ("invoice_number", "low_confidence") in _flags(result)


@pytest.mark.parametrize(
    ("read", "fixed"),
    [
        ("Brightpath Media ple", "Brightpath Media plc"),
        ("Orion Print lnc.", "Orion Print Inc."),
        ("Falcon Labs 8.V.", "Falcon Labs B.V."),
        ("Kestrel Tools LLC", "Kestrel Tools LLC"),
        ("John Garcia", "John Garcia"),
        ("Acme", "Acme"),
    ],
)
def test_legal_form_lookalikes_are_corrected(read, fixed) -> None:
    assert fix_legal_form(read) == fixed


def test_an_identifier_mixing_letters_and_lookalike_digits_and_an_empty_party_label_are_flagged() -> None:
    ocr = _page(
        [("Acme Supplies Ltd", 60, 420)],
        [("Invoice No:", 700, 900), ("S0-43406-B", 1000, 1140)],
        [("Bill to:", 60, 200)],
        [("Total:", 700, 900), ("$10.00", 1000, 1140)],
    )
    result = extract_invoice(ocr)
    assert result.value("invoice_number") == "S0-43406-B"
    assert result.fields["invoice_number"].confidence < LOW_CONFIDENCE
    assert {("invoice_number", "lookalike_characters"), ("buyer", "missing")} <= _flags(result)
