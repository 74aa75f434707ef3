"""Tax IDs validated by their check digits (#25 point 3): a misread VAT number is flagged."""

from __future__ import annotations

import pytest

from tests.vision.ocr.test_invoice import _page
from vision.ocr.invoice import extract_invoice
from vision.ocr.taxid import check_tax_id


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("DE136695976", "eu_vat"), ("NL853746333B01", "eu_vat"), ("FR 40 303 265 045", "eu_vat"),
        ("GB980780684", "gb_vat"), ("CHE-107.787.577 MWST", "ch_vat"), ("NO 995 525 828 MVA", "no_mva"),
        ("91110108551385082Q", "cn_uscc"), ("27AAPFU0939F1ZV", "in_gstin"),
    ],
)  # fmt: skip
def test_real_tax_ids_check(text: str, kind: str) -> None:
    found = check_tax_id(text)
    assert found is not None and found.kind == kind and found.valid


@pytest.mark.parametrize(
    "text", ["DE136695977", "NL853746334B01", "GB980780685", "91110108551385083Q", "27AAPFU0939F1ZX"]
)
def test_a_wrong_digit_fails(text: str) -> None:
    found = check_tax_id(text)
    assert found is not None and not found.valid


def test_unknown_formats_are_not_judged() -> None:
    assert check_tax_id("12-3456789") is None  # a US EIN
    assert check_tax_id("143/123/45678") is None  # a German Steuernummer


def test_the_reader_flags_an_invalid_vat_number_and_not_a_valid_one() -> None:
    def read(vat: str):
        return extract_invoice(
            _page(
                [("Müller Technik GmbH", 60, 500)],
                [(f"USt-IdNr.: {vat}", 60, 500)],
                [("Rechnungsnummer:", 600, 820), ("RE-1", 840, 1040)],
                [("Gesamtbetrag:", 600, 820), ("119,00 €", 840, 1040)],
            )
        )

    good, bad = read("DE136695976"), read("DE136695977")
    assert good.value("seller_tax_id") == "DE136695976" and bad.value("seller_tax_id") == "DE136695977"
    assert not any(f.code == "invalid_tax_id" for f in good.flags)
    assert [f.field for f in bad.flags if f.code == "invalid_tax_id"] == ["seller_tax_id"]
