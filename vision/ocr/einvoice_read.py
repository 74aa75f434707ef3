"""The invoice fields of a parsed e-invoice: one reader per syntax, UN/CEFACT CII (Factur-X /
ZUGFeRD 2.x, XRechnung CII; ZUGFeRD 1.0's CrossIndustryDocument too) and OASIS UBL 2.1 Invoice /
CreditNote (XRechnung UBL, Peppol BIS Billing 3.0). What the two syntaxes share (a party with
its VAT ID, a line with its adjustments, a document allowance or charge, a tax breakdown row)
is read by one method of `_Reader`; each syntax gives only its element paths. Every field has
the source `xml` and confidence 1.0. No Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar
from xml.etree.ElementTree import Element

from vision.ocr.einvoice_xml import children, cii_date, find, find_all, iso_date, number, split_tag, text
from vision.ocr.invoice_types import Field, Flag, InvoiceExtraction, Item, json_value
from vision.ocr.normalize import money

SOURCE = "xml"


@dataclass
class TaxLine:
    """One row of the tax breakdown (EN 16931 BG-23): a category, its rate, basis and amount."""

    category: str | None
    rate: Decimal | None  # percent, e.g. 19
    basis: Decimal | None
    amount: Decimal | None
    exemption: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "rate": json_value(self.rate),
            "basis": json_value(self.basis),
            "amount": json_value(self.amount),
            "exemption": self.exemption,
        }


@dataclass
class EInvoiceExtraction(InvoiceExtraction):
    syntax: str = ""  # "cii" | "ubl"
    profile: str = ""  # the guideline / customization ID (Factur-X profile, XRechnung, Peppol)
    tax_breakdown: list[TaxLine] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["tax_breakdown"] = [line.to_dict() for line in self.tax_breakdown]
        out["sources"] = {name: f.source for name, f in self.fields.items()}
        return out


def _is_charge(adjustment: Element) -> bool:
    """An allowance/charge element's indicator: CII nests it (ChargeIndicator/Indicator), UBL
    does not (ChargeIndicator)."""
    flag = text(find(adjustment, "ChargeIndicator/Indicator")) or text(find(adjustment, "ChargeIndicator"))
    return (flag or "").lower() == "true"


class _Reader:
    # (field, path from the trade agreement / document root to the party element)
    PARTIES: ClassVar[tuple[tuple[str, str], ...]]
    # the local-name paths of a tax breakdown row's parts, from the row element
    TAX_ROW: ClassVar[dict[str, str]]

    def __init__(self, root: Element) -> None:
        self.root = root
        self.result = EInvoiceExtraction()
        self.currency: str | None = None

    def read(self) -> EInvoiceExtraction:
        raise NotImplementedError

    def set(self, name: str, value: Any) -> None:
        if value in (None, "") or name in self.result.fields:
            return
        self.result.fields[name] = Field(value, None, 1.0, SOURCE)

    def amount(self, name: str, element: Element | None) -> None:
        value = number(element)
        if element is not None and value is None:
            self.result.flags.append(
                Flag(name, "xml_invalid", f"{name} in the XML is not a number: {text(element)!r}")
            )
        self.set(name, money(value))

    def set_currency(self, element: Element | None) -> None:
        self.currency = text(element)
        self.set("currency", self.currency.upper() if self.currency else None)

    def in_currency(self, elements: list[Element]) -> Element | None:
        """Of several amounts (a tax total given in the invoice and in the VAT currency), the one in
        the invoice's currency, or the one without a currency."""
        for element in elements:
            if element.get("currencyID") in (None, self.currency):
                return element
        return elements[0] if elements else None

    def party_name(self, party: Element | None) -> str | None:
        raise NotImplementedError

    def party_tax_id(self, party: Element | None) -> str | None:
        raise NotImplementedError

    def parties(self, base: Element | None) -> None:
        """The seller and the buyer, each with its VAT ID."""
        for role, path in self.PARTIES:
            element = find(base, path)
            self.set(role, self.party_name(element))
            self.set(f"{role}_tax_id", self.party_tax_id(element))

    def item(
        self,
        description: str | None,
        quantity: Decimal | None,
        price: Decimal | None,
        base: Decimal | None,
        amount: Decimal | None,
        adjustments: list[Element],
    ) -> None:
        """One line. A line with its own allowances or charges (BG-27/28) has an amount that is not
        quantity × price: they are named in the description and the price is left out, so the
        quantity × price check does not fail on an exact line."""
        unit_price = price
        if price is not None and base is not None and base not in (0, 1):  # a price per 100 pieces
            unit_price = price / base
        notes = []
        for adjustment in adjustments:
            value = number(find(adjustment, "ActualAmount|Amount"))
            if value is not None:
                notes.append(f"{'charge' if _is_charge(adjustment) else 'allowance'} {money(value)}")
        if notes:
            description = f"{description or ''} ({', '.join(notes)})".strip()
            unit_price = None
        self.result.items.append(Item(description or "", quantity, unit_price, money(amount), None, 1.0))

    def allowances(self, elements: list[Element]) -> None:
        """Document-level allowances and charges (BG-20/21), as items (negative for an allowance),
        so that the items still sum to the subtotal the way they do on the printed page."""
        for element in elements:
            amount = number(find(element, "ActualAmount|Amount"))
            if amount is None:
                continue
            charge = _is_charge(element)
            reason = text(find(element, "Reason|AllowanceChargeReason"))
            label = ("Charge" if charge else "Allowance") + (f": {reason}" if reason else "")
            self.result.items.append(Item(label, None, None, money(amount if charge else -amount), None, 1.0))

    def finish(self, rows: list[Element]) -> EInvoiceExtraction:
        """The tax breakdown from its rows; one rate for the whole invoice makes the reader's
        tax-rate check apply (tax = subtotal × rate)."""
        paths = self.TAX_ROW
        taxes = [
            TaxLine(
                category=text(find(row, paths["category"])),
                rate=number(find(row, paths["rate"])),
                basis=money(number(find(row, paths["basis"]))),
                amount=money(number(find(row, paths["amount"]))),
                exemption=text(find(row, paths["exemption"])),
            )
            for row in rows
        ]
        self.result.tax_breakdown = taxes
        rates = {line.rate for line in taxes if line.rate is not None}
        if len(rates) == 1 and len(taxes) == 1:
            self.result.rates = [rates.pop() / 100]
        return self.result


class CiiReader(_Reader):
    PARTIES = (("seller", "SellerTradeParty"), ("buyer", "BuyerTradeParty"))
    TAX_ROW: ClassVar[dict[str, str]] = {
        "category": "CategoryCode",
        "rate": "RateApplicablePercent|ApplicablePercent",
        "basis": "BasisAmount",
        "amount": "CalculatedAmount",
        "exemption": "ExemptionReason",
    }

    def party_name(self, party: Element | None) -> str | None:
        return text(find(party, "Name"))

    def party_tax_id(self, party: Element | None) -> str | None:
        """The party's VAT ID (schemeID VA), else its tax number (FC)."""
        ids = {
            (e.get("schemeID") or "").upper(): text(e) for e in find_all(party, "SpecifiedTaxRegistration/ID")
        }
        return ids.get("VA") or ids.get("FC")

    def read(self) -> EInvoiceExtraction:
        root, set_ = self.root, self.set
        self.result.profile = (
            text(
                find(
                    root,
                    "ExchangedDocumentContext|SpecifiedExchangedDocumentContext/GuidelineSpecifiedDocumentContextParameter/ID",
                )
            )
            or ""
        )
        header = find(root, "ExchangedDocument|HeaderExchangedDocument")
        set_("invoice_number", text(find(header, "ID")))
        set_("invoice_date", cii_date(find(header, "IssueDateTime/DateTimeString")))
        trade = find(root, "SupplyChainTradeTransaction|SpecifiedSupplyChainTradeTransaction")
        agreement = find(trade, "ApplicableHeaderTradeAgreement|ApplicableSupplyChainTradeAgreement")
        settlement = find(trade, "ApplicableHeaderTradeSettlement|ApplicableSupplyChainTradeSettlement")
        self.set_currency(find(settlement, "InvoiceCurrencyCode"))
        self.parties(agreement)
        for terms in children(settlement, "SpecifiedTradePaymentTerms"):
            set_("due_date", cii_date(find(terms, "DueDateDateTime/DateTimeString")))
        sums = find(
            settlement,
            "SpecifiedTradeSettlementHeaderMonetarySummation|SpecifiedTradeSettlementMonetarySummation",
        )
        self.amount("subtotal", find(sums, "TaxBasisTotalAmount"))
        self.amount("tax", self.in_currency(children(sums, "TaxTotalAmount")))
        self.amount("total", find(sums, "GrandTotalAmount"))

        for line in children(trade, "IncludedSupplyChainTradeLineItem"):
            price = find(
                line,
                "SpecifiedLineTradeAgreement|SpecifiedSupplyChainTradeAgreement/NetPriceProductTradePrice",
            )
            self.item(
                text(find(line, "SpecifiedTradeProduct/Name")),
                number(
                    find(line, "SpecifiedLineTradeDelivery|SpecifiedSupplyChainTradeDelivery/BilledQuantity")
                ),
                number(find(price, "ChargeAmount")),
                number(find(price, "BasisQuantity")),
                number(
                    find(
                        line,
                        "SpecifiedLineTradeSettlement|SpecifiedSupplyChainTradeSettlement/SpecifiedTradeSettlementLineMonetarySummation|SpecifiedTradeSettlementMonetarySummation/LineTotalAmount",
                    )
                ),
                find_all(
                    line,
                    "SpecifiedLineTradeSettlement|SpecifiedSupplyChainTradeSettlement/SpecifiedTradeAllowanceCharge",
                ),
            )
        self.allowances(children(settlement, "SpecifiedTradeAllowanceCharge"))
        return self.finish(children(settlement, "ApplicableTradeTax"))


class UblReader(_Reader):
    PARTIES = (("seller", "AccountingSupplierParty/Party"), ("buyer", "AccountingCustomerParty/Party"))
    TAX_ROW: ClassVar[dict[str, str]] = {
        "category": "TaxCategory/ID",
        "rate": "TaxCategory/Percent",
        "basis": "TaxableAmount",
        "amount": "TaxAmount",
        "exemption": "TaxCategory/TaxExemptionReason",
    }

    def party_name(self, party: Element | None) -> str | None:
        return text(find(party, "PartyLegalEntity/RegistrationName")) or text(find(party, "PartyName/Name"))

    def party_tax_id(self, party: Element | None) -> str | None:
        """The CompanyID of the party's VAT scheme, else of its first tax scheme."""
        schemes = children(party, "PartyTaxScheme")
        for scheme in schemes:
            if (text(find(scheme, "TaxScheme/ID")) or "").upper() == "VAT":
                return text(find(scheme, "CompanyID"))
        return text(find(schemes[0], "CompanyID")) if schemes else None

    def read(self) -> EInvoiceExtraction:
        root, set_ = self.root, self.set
        credit = split_tag(root.tag)[1] == "CreditNote"
        self.result.profile = text(find(root, "CustomizationID")) or ""
        set_("invoice_number", text(find(root, "ID")))
        set_("invoice_date", iso_date(text(find(root, "IssueDate"))))
        self.set_currency(find(root, "DocumentCurrencyCode"))
        self.parties(root)
        set_("due_date", iso_date(text(find(root, "DueDate"))))
        set_("due_date", iso_date(text(find(root, "PaymentMeans/PaymentDueDate"))))
        totals = find(root, "LegalMonetaryTotal")
        self.amount("subtotal", find(totals, "TaxExclusiveAmount"))
        tax_totals = children(root, "TaxTotal")
        # The tax total in the invoice's currency (a second one may give it in the VAT currency).
        tax_total = next(
            (
                t
                for t in tax_totals
                if find(t, "TaxAmount") is not None
                and find(t, "TaxAmount").get("currencyID") in (None, self.currency)
            ),
            tax_totals[0] if tax_totals else None,
        )
        self.amount("tax", find(tax_total, "TaxAmount"))
        self.amount("total", find(totals, "TaxInclusiveAmount"))

        for line in children(root, "CreditNoteLine" if credit else "InvoiceLine"):
            self.item(
                text(find(line, "Item/Name")),
                number(find(line, "CreditedQuantity" if credit else "InvoicedQuantity")),
                number(find(line, "Price/PriceAmount")),
                number(find(line, "Price/BaseQuantity")),
                number(find(line, "LineExtensionAmount")),
                children(line, "AllowanceCharge"),
            )
        self.allowances(children(root, "AllowanceCharge"))
        return self.finish(children(tax_total, "TaxSubtotal"))
