"""Tax IDs checked by their check digits (python-stdnum): EU VAT numbers (with the country
prefix), GB, CH (CHE-… MWST/TVA/IVA), NO (… MVA), China's unified social credit code and India's
GSTIN. An ID in one of these formats whose digits do not check is a misread or a wrong number: the
reader flags it. An ID of another format (a US EIN, a German Steuernummer) is not judged. No
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
