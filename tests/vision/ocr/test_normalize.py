from datetime import date
from decimal import Decimal

import pytest

from vision.ocr.normalize import date_is_ambiguous, detect_currency, find_amounts, parse_amount, parse_date


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,234.50", "1234.50"),
        ("1.234,50", "1234.50"),
        ("1 234,50", "1234.50"),
        ("¥1,234.50", "1234.50"),
        ("$ 12", "12"),
        ("€3,5", "3.5"),
        ("(12.00)", "-12.00"),
        ("1.234.567", "1234567"),
        ("12.5", "12.5"),
        ("１２３．４５", "123.45"),
        ("EUR 1.200,00", "1200.00"),
        (7, "7"),
        (2.5, "2.5"),
    ],
)
def test_parse_amount(text, value) -> None:
    assert parse_amount(text) == Decimal(value)


def test_parse_amount_without_digits() -> None:
    assert parse_amount("n/a") is None and parse_amount(None) is None


def test_find_amounts_skips_identifiers_and_keeps_cells_apart() -> None:
    found = [str(v) for v, _, _ in find_amounts("INV-2024-0042  2 125.00  ¥1,250.00")]
    assert found == ["2", "125.00", "1250.00"]


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-15",
        "2024/3/15",
        "2024.03.15",
        "2024年3月15日",
        "15 March 2024",
        "March 15, 2024",
        "15-Mar-2024",
        "15/03/2024",
        "Mar. 15th, 2024",
        "20240315",
        "１５/０３/２０２４",
    ],
)
def test_parse_date(text) -> None:
    assert parse_date(text) == date(2024, 3, 15)


def test_ambiguous_dates_follow_the_hint() -> None:
    assert parse_date("05/03/2024") == date(2024, 3, 5)
    assert parse_date("05/03/2024", dayfirst=False) == date(2024, 5, 3)
    assert date_is_ambiguous("05/03/2024") and not date_is_ambiguous("15/03/2024")
    assert parse_date("31/02/2024") is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Total: EUR 1.234,50", "EUR"),
        ("¥12", "CNY"),
        ("$5", "USD"),
        ("£5", "GBP"),
        ("人民币", "CNY"),
        ("RMB 5", "CNY"),
        ("12.00", None),
    ],
)
def test_detect_currency(text, code) -> None:
    assert detect_currency(text) == code
