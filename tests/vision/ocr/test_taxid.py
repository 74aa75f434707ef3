"""Tax IDs validated by their check digits: a misread VAT number is flagged."""

from __future__ import annotations

import pytest

from tests.vision.ocr.test_invoice import _page
from vision.ocr.invoice import extract_invoice
from vision.ocr.taxid import check_tax_id, find_ibans


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("DE136695976", "eu_vat"),
        ("NL853746333B01", "eu_vat"),
        ("FR 40 303 265 045", "eu_vat"),
        ("GB980780684", "gb_vat"),
        ("CHE-107.787.577 MWST", "ch_vat"),
        ("NO 995 525 828 MVA", "no_mva"),
        ("91110108551385082Q", "cn_uscc"),
        ("27AAPFU0939F1ZV", "in_gstin"),
    ],
)
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


@pytest.mark.parametrize(
    ("line", "compact"),
    [
        ("IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX", "DE89370400440532013000"),
        ("Bank: IBAN: FR76 3000 6000 0112 3456 7890 189", "FR7630006000011234567890189"),
        ("IBAN GB29 NWBK 6016 1331 9268 19, BIC NWBKGB2L", "GB29NWBK60161331926819"),
        ("iban nl91abna0417164300", "NL91ABNA0417164300"),
        ("IBAN: BE31-4354-1116-1155 (Belfius)", "BE31435411161155"),
    ],
)
def test_a_real_iban_after_its_label_checks(line: str, compact: str) -> None:
    [found] = find_ibans(line)
    assert found.valid and found.compact == compact and found.reason == ""


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("IBAN DE89 3704 0044 0532 0130 01", "check digits"),  # one digit misread
        ("IBAN: FR76 3000 6000 0112 3456 7890 18", "26 characters, an IBAN of FR has 27"),
        ("IBAN DE89 3704 0044 0532 0130 0012", "24 characters, an IBAN of DE has 22"),
    ],
)
def test_a_misread_iban_is_not_valid_and_says_why(line: str, why: str) -> None:
    [found] = find_ibans(line)
    assert not found.valid and why in found.reason


def test_no_iban_without_its_label_or_of_an_unknown_country() -> None:
    assert find_ibans("Account DE89 3704 0044 0532 0130 00") == []
    assert find_ibans("IBAN XX12 3456 7890 1234") == []
    assert find_ibans("IBAN and BIC are printed below") == []


def test_the_reader_flags_an_invalid_iban_on_the_page_and_not_a_valid_one() -> None:
    def read(iban: str):
        return extract_invoice(
            _page(
                [("Müller Technik GmbH", 60, 500)],
                [("Rechnungsnummer:", 600, 820), ("RE-1", 840, 1040)],
                [("Gesamtbetrag:", 600, 820), ("119,00 €", 840, 1040)],
                [(f"Bankverbindung: IBAN {iban} BIC COBADEFFXXX", 60, 900)],
            )
        )

    good, bad = read("DE89 3704 0044 0532 0130 00"), read("DE89 3704 0044 0532 0130 01")
    assert not any(f.code == "invalid_iban" for f in good.flags)
    [flag] = [f for f in bad.flags if f.code == "invalid_iban"]
    assert (
        flag.field == "iban"
        and "DE89 3704 0044 0532 0130 01" in flag.reason
        and "check digits" in flag.reason
    )
    assert bad.value("invoice_number") == good.value("invoice_number") == "RE-1"  # the fields stand
