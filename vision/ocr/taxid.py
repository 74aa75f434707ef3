"""Tax IDs and IBANs checked by their check digits (python-stdnum): EU VAT numbers (with the
country prefix), GB, CH (CHE-… MWST/TVA/IVA), NO (… MVA), China's unified social credit code,
India's GSTIN, and IBANs after an "IBAN" label. An ID in one of these formats whose digits do not
check is a misread or a wrong number: the reader flags it. An ID of another format (a US EIN, a German Steuernummer) is not judged. No
Django."""

from __future__ import annotations

import re
from dataclasses import dataclass

_EU = {
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "XI",
}  # fmt: skip


@dataclass(frozen=True)
class TaxId:
    kind: str  # eu_vat | gb_vat | ch_vat | no_mva | cn_uscc | in_gstin
    compact: str  # the number without spaces and punctuation
    valid: bool


def check_tax_id(text: str) -> TaxId | None:
    """The kind of tax ID `text` is and whether its check digits hold; None for a format this
    module does not know (then nothing can be said about it)."""
    from stdnum import exceptions
    from stdnum.ch import vat as ch_vat
    from stdnum.cn import uscc
    from stdnum.eu import vat as eu_vat
    from stdnum.gb import vat as gb_vat
    from stdnum.in_ import gstin
    from stdnum.no import mva

    raw = text.strip().upper()
    compact = re.sub(r"[\s.\-/]", "", raw)
    kinds = []
    if compact.startswith("CHE"):
        kinds.append(("ch_vat", ch_vat))
    elif compact.startswith("NO") or compact.endswith("MVA"):
        kinds.append(("no_mva", mva))
    elif compact[:2] in ("GB", "XI") and re.fullmatch(
        r"[A-Z]{2}\d{9}(?:\d{3})?|[A-Z]{2}(?:GD|HA)\d{3}", compact
    ):
        kinds.append(("gb_vat", gb_vat))
    elif compact[:2] in _EU or compact[:2] == "GR":
        kinds.append(("eu_vat", eu_vat))
    elif re.fullmatch(r"\d{2}[A-Z]{5}\d{4}[A-Z][1-9A-Z]Z[0-9A-Z]", compact):
        kinds.append(("in_gstin", gstin))
    elif re.fullmatch(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}", compact):
        kinds.append(("cn_uscc", uscc))
    for kind, module in kinds:
        try:
            number = module.validate(raw)
        except exceptions.ValidationError:
            return TaxId(kind, compact, False)
        return TaxId(kind, module.compact(number), True)
    return None


@dataclass(frozen=True)
class Iban:
    text: str  # as printed, after its label
    compact: str  # without spaces
    valid: bool
    reason: str  # why it is not valid; "" when it is


_IBAN_LABEL = re.compile(r"\bIBAN\b[\s:：.#-]*", re.I)
_IBAN_START = re.compile(r"[A-Z]{2}\d{2}")


def _iban_length(country: str) -> int | None:
    """The length of an IBAN of `country` in the IBAN registry python-stdnum carries; None for a
    country without IBANs."""
    from stdnum import numdb

    info = numdb.get("iban").info(country)
    structure = info[0][1].get("bban") if info and info[0][1] else None
    if not structure:
        return None
    return 4 + sum(int(n) for n in re.findall(r"(\d+)!", structure))


def find_ibans(text: str) -> list[Iban]:
    """The IBANs printed after an "IBAN" label in `text` (one line of a page), each checked by its
    ISO 7064 check digits and its country's structure. The number is read group by group until it
    has its country's length; one that ends inside a group, or is too short, is not valid."""
    from stdnum import exceptions, iban

    found = []
    for label in _IBAN_LABEL.finditer(text):
        rest = text[label.end() :]
        start = _IBAN_START.match(rest.upper())
        if not start:
            continue
        country = rest[:2].upper()
        length = _iban_length(country)
        if length is None:
            continue
        groups, compact = [], ""
        for token in rest.split():
            group = token.rstrip(",;)").replace("-", "")
            if not group.isalnum() or len(compact) >= length:
                break
            groups.append(group)
            compact += group.upper()
            if group != token:
                break
        printed = " ".join(groups)
        if len(compact) != length:
            reason = f"it has {len(compact)} characters, an IBAN of {country} has {length}"
            found.append(Iban(printed, compact, False, reason))
            continue
        try:
            iban.validate(compact)
        except exceptions.ValidationError:
            found.append(Iban(printed, compact, False, "its check digits do not match"))
            continue
        found.append(Iban(printed, compact, True, ""))
    return found
