"""Invoice labels, dates and amounts in the languages the reader claims: one page
per language, laid out as label | value rows, read by the layout extractor. The words are the
ones real invoices in each language print; the layouts are the simplest, so a failure here is a
missing synonym or format, not a layout problem."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.vision.ocr.test_invoice import _page
from vision.ocr.invoice import extract_invoice
from vision.ocr.normalize import parse_amount, parse_date

# language: (seller, number label, number, date label, date text, buyer label, buyer,
#            subtotal label, subtotal, tax label, tax, total label, total, ISO date, currency)
PAGES = {
    "de": ("Müller Technik GmbH", "Rechnungsnummer", "RE-2024-0815", "Rechnungsdatum", "3. März 2024", "Rechnungsadresse", "Schmidt & Söhne KG", "Nettobetrag", "1.000,00 €", "MwSt. 19 %", "190,00 €", "Gesamtbetrag", "1.190,00 €", "2024-03-03", "EUR"),
    "fr": ("Dupont Services SARL", "N° de facture", "F-2024-117", "Date de facture", "1er mars 2024", "Facturé à", "Martin Conseil SAS", "Total HT", "1 250,00 €", "TVA 20 %", "250,00 €", "Total TTC", "1 500,00 €", "2024-03-01", "EUR"),
    "nl": ("Jansen Elektro B.V.", "Factuurnummer", "2014-0419", "Factuurdatum", "19 april 2014", "Factuuradres", "De Vries Bouw B.V.", "Subtotaal", "€ 100,00", "BTW 21%", "€ 21,00", "Te betalen", "€ 121,00", "2014-04-19", "EUR"),
    "es": ("García Suministros S.L.", "Número de factura", "FA-0042", "Fecha de emisión", "5 de marzo de 2024", "Cliente", "López Hermanos S.A.", "Base imponible", "200,00 €", "IVA 21 %", "42,00 €", "Total factura", "242,00 €", "2024-03-05", "EUR"),
    "it": ("Rossi Forniture S.r.l.", "Numero fattura", "17/2024", "Data fattura", "12 dicembre 2022", "Cliente", "Bianchi Costruzioni S.p.A.", "Imponibile", "€ 300,00", "IVA 22%", "€ 66,00", "Totale documento", "€ 366,00", "2022-12-12", "EUR"),
    "pt": ("Silva Comércio Lda", "Fatura n.º", "FT 2024/88", "Data de emissão", "07/02/2024", "Cliente", "Costa Distribuição Lda", "Total sem IVA", "400,00 €", "IVA 23%", "92,00 €", "Total a pagar", "492,00 €", "2024-02-07", "EUR"),
    "pl": ("Kowalski Sp. z o.o.", "Faktura VAT nr", "FV/12/2024", "Data wystawienia", "5 maja 2024", "Nabywca", "Nowak Handel Sp. z o.o.", "Wartość netto", "1 000,00 zł", "Kwota VAT 23%", "230,00 zł", "Do zapłaty", "1 230,00 zł", "2024-05-05", "PLN"),
    "sv": ("Andersson Bygg AB", "Fakturanummer", "10234", "Fakturadatum", "2024-06-14", "Kund", "Lindqvist Måleri AB", "Summa exkl. moms", "8 000,00 kr", "Moms 25%", "2 000,00 kr", "Att betala", "10 000,00 SEK", "2024-06-14", "SEK"),
    "da": ("Hansen Service ApS", "Fakturanr.", "4711", "Fakturadato", "14. juni 2024", "Kunde", "Nielsen Transport A/S", "Subtotal", "DKK 800,00", "Moms 25%", "DKK 200,00", "I alt", "DKK 1.000,00", "2024-06-14", "DKK"),
    "en-ch": ("Alpen Werkzeug AG", "Invoice No.", "CH-2024-7", "Invoice date", "14.06.2024", "Bill to", "Berg Logistik AG", "Subtotal", "CHF 1'000.00", "VAT 8.1%", "CHF 81.00", "Total", "CHF 1'081.00", "2024-06-14", "CHF"),
    "ja": ("株式会社山田商事", "請求書番号", "INV-0310", "請求日", "令和6年3月10日", "請求先", "佐藤工業株式会社", "小計", "¥10,000", "消費税 10%", "¥1,000", "ご請求金額", "¥11,000 円", "2024-03-10", "JPY"),
}  # fmt: skip


@pytest.mark.parametrize("language", sorted(PAGES))
def test_labels_dates_and_amounts_in_each_language(language: str) -> None:
    (
        seller,
        number_label,
        number,
        date_label,
        date_text,
        buyer_label,
        buyer,
        sub_label,
        sub,
        tax_label,
        tax,
        total_label,
        total,
        iso_date,
        currency,
    ) = PAGES[language]
    ocr = _page(
        [(seller, 60, 500)],
        [(f"{number_label}:", 600, 820), (number, 840, 1040)],
        [(f"{date_label}:", 600, 820), (date_text, 840, 1040)],
        [(f"{buyer_label}:", 60, 300)],
        [(buyer, 60, 500)],
        [(f"{sub_label}:", 600, 820), (sub, 840, 1040)],
        [(f"{tax_label}:", 600, 820), (tax, 840, 1040)],
        [(f"{total_label}:", 600, 820), (total, 840, 1040)],
    )
    result = extract_invoice(ocr)
    got = {
        name: result.value(name)
        for name in (
            "invoice_number",
            "invoice_date",
            "seller",
            "buyer",
            "subtotal",
            "tax",
            "total",
            "currency",
        )
    }
    assert got == {
        "invoice_number": number,
        "invoice_date": parse_date(iso_date),
        "seller": seller,
        "buyer": buyer,
        "subtotal": parse_amount(sub),
        "tax": parse_amount(tax),
        "total": parse_amount(total),
        "currency": currency,
    }
    assert all(c.ok for c in result.checks) and {c.name for c in result.checks} >= {
        "subtotal_plus_tax_total",
        "tax_rate",
    }


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("19 april 2014", "2014-04-19"), ("19. April 2014", "2014-04-19"), ("3. März 2023", "2023-03-03"),
        ("1er mars 2024", "2024-03-01"), ("15 septembre 2023", "2023-09-15"), ("7 décembre 2019", "2019-12-07"),
        ("20 maart 2021", "2021-03-20"), ("5 de marzo de 2024", "2024-03-05"), ("12 dicembre 2022", "2022-12-12"),
        ("3 de fevereiro de 2024", "2024-02-03"), ("5 maja 2024", "2024-05-05"), ("5 maj 2024", "2024-05-05"),
        ("14. juni 2024", "2024-06-14"), ("4 Okt. 2021", "2021-10-04"), ("令和6年3月10日", "2024-03-10"),
        ("平成31年4月1日", "2019-04-01"), ("13.06.2016", "2016-06-13"), ("March 5, 2024", "2024-03-05"),
    ],
)  # fmt: skip
def test_dates_with_month_names_in_every_language(text: str, iso: str) -> None:
    assert parse_date(text).isoformat() == iso


@pytest.mark.parametrize(
    ("text", "value"),
    [("1.234,56", "1234.56"), ("1 234,56", "1234.56"), ("1\u202f234,56 €", "1234.56"), ("1'234.56", "1234.56"),
     ("1,234.56", "1234.56"), ("CHF 1'081.00", "1081.00"), ("€ 21,00", "21.00")],
)  # fmt: skip
def test_amount_formats(text: str, value: str) -> None:
    assert parse_amount(text) == Decimal(value)


@pytest.mark.parametrize(
    "text",
    ["the charges shown on this page. The charges", "FACTUUR.", "RECHNUNG", "case", "tal", "收款人：张三",
     "Thank you for your order. We invoice the following items", "INV-2024-4202", "Rechnungsnummer"],
)  # fmt: skip
def test_what_is_never_a_party(text: str) -> None:
    from vision.ocr.invoice import plausible_party

    assert not plausible_party(text)


def test_a_seller_named_only_in_the_legal_footer_is_read_from_it_not_from_a_heading() -> None:
    ocr = _page(
        [("PUBLICATION ANNONCE LEGALE", 60, 700)],
        [("Facture N°", 600, 820), ("2015-0342", 840, 1040)],
        [("Date de facture :", 600, 820), ("02/07/2015", 840, 1040)],
        [("Total TTC :", 600, 820), ("120,00 €", 840, 1040)],
        [("Legalis SAS au capital de 10 000 € - RCS Paris 123 456 789", 60, 1040)],
    )
    result = extract_invoice(ocr)
    assert result.value("seller") == "Legalis SAS"
    assert result.fields["seller"].source == "legal_line"
    assert result.value("invoice_date").isoformat() == "2015-07-02"
