"""What invoice labels say: synonym tables for every field, in English and Chinese, and the
column titles of item tables. Shared by the layout extractor; no Django.

The tables are the wording real invoices use (and a few distractor labels whose numbers must not
be taken for a field), not the wording of any one generator or template. Add a synonym here, not a
special case in the extractor.
"""

from __future__ import annotations

import re

# Tried in this order at each position of a line: Python's alternation takes the first alternative
# that matches there, so "Subtotal" is not "Total", "VAT No" is not "VAT", "Due Date" is not "Date",
# "价税合计" is not "合计", and "Customer No." is a reference, not the buyer. finditer scans left
# to right, so "Total due" is a total (its match starts at "Total"), while "Due" alone is a due date.
LABELS: list[tuple[str, str]] = [
    # numbers next to these are never a field: references, contact and bank details, pages
    ("other_ref", r"(?:order|po|p\.o\.|purchase\s*order|customer|client|account|acct|delivery|ref(?:erence)?)\s*(?:no\b\.?|number|num\b|#|id\b)|\breference\b|\bref\b\.?|\biban\b|\bbic\b|\bswift\b|\breg\.?\s*no\b\.?|\bphone\b|\btel\b\.?|\bfax\b|\bpage\s+\d|\bmobile\b|电话|开户行及账号|地\s*址"),
    ("invoice_number", r"invoice\s*(?:no\b\.?|number|num\b|nr\b\.?|#)|inv\.?\s*(?:no\b\.?|number|#|nr\b)|bill\s*(?:no\b\.?|number|#)|receipt\s*(?:no\b\.?|number|#)|document\s*(?:no\b\.?|number)|发票号码|发票号|票据号码"),
    ("due_date", r"due\s*date|payment\s*due|due\s*by|\bdue\b(?!\s*(?:amount|total))|pay\s*by|payable\s*by|到期日期?|付款期限"),
    ("invoice_date", r"invoice\s*date|date\s*of\s*issue|issue\s*date|date\s*issued|\bissued\b(?!\s*by)|开票日期|\bdate\b|日期"),
    ("tax_id", r"vat\s*(?:no\b\.?|number|reg(?:istration)?\b\.?|id\b)|tax\s*(?:id|no\b\.?|number|reg)|\btin\b|\babn\b|gst\s*(?:no\b|number|reg)|纳税人识别号|统一社会信用代码|税号"),
    # amounts that sit near the totals but are not this invoice's subtotal, tax or total
    ("other_amount", r"previous\s*balance|balance\s*(?:brought|carried)\s*forward|payments?\s*received|amount\s*paid|\bpaid\b|\bchange\b|\bcash\b|\bcard\b|\bvisa\b|\bmastercard\b|tendered|deposit"),
    ("subtotal", r"sub\s*-?\s*total|net\s*(?:amount|total|value)|total\s*(?:(?:excl\.?|excluding|before|w/o|without)\s*(?:vat|tax|gst)?|net)|\bnet\b|金额合计|(?<!价税)合\s*计"),
    ("total", r"grand\s*total|total\s*(?:(?:incl\.?|including|with)\s*(?:vat|tax|gst)?|due|amount|payable|to\s*pay)|amount\s*(?:due|payable)|balance\s*due|\btotal\b|价税合计"),
    ("tax", r"sales\s*tax|\bvat\b|\bgst\b|\bhst\b|\bmwst\b\.?|\btva\b|\biva\b|\btax\b|税\s*额"),
    ("currency", r"\bcurrency\b|amounts?\s*in\b|币种"),
    ("seller", r"\b(?:from|seller|supplier|vendor|sold\s*by|issued\s*by)\b|销售方|销方|卖方"),
    ("buyer", r"bill(?:ed)?\s*to|invoice\s*to|\bbuyer\b|\bcustomer\b|\bclient\b|sold\s*to|购买方|购方|买方"),
]  # fmt: skip
LABEL_RE = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in LABELS), re.I)

COLUMNS: list[tuple[str, str]] = [
    ("tax_amount", r"税\s*额"),
    ("tax_rate", r"tax\s*rate|vat\s*%|税率"),
    ("description", r"description|\bitems?\b|product|service|名称|项目|货物"),
    ("quantity", r"\bqty\b|quantity|数\s*量"),
    ("unit_price", r"unit\s*price|\bprice\b|\brate\b|单\s*价"),
    ("amount", r"\bamount\b|line\s*total|\btotal\b|金\s*额"),
    ("other", r"\bunit\b|\buom\b|单位|规格型号"),
]
COLUMN_RES = [(name, re.compile(pattern, re.I)) for name, pattern in COLUMNS]

TITLE = re.compile(
    r"^(?:(?:tax|commercial|proforma|vat|sales)\s*)?(?:invoice|receipt|bill)$|发票|^收据$", re.I
)
# The title of an invoice (not a receipt, not a label such as 发票号码): such a page names a buyer.
INVOICE_TITLE = re.compile(
    r"^(?:(?:tax|commercial|proforma|vat|sales)\s*)?invoice$|^[^:：]*发票[）)]?$", re.I
)
COMPANY = re.compile(
    r"\b(?:ltd|llc|inc|gmbh|co|corp|corporation|limited|plc|s\.?a|ag|bv|b\.v|sarl|srl|oy|ab|kg|pty)\b\.?|公司",
    re.I,
)
# A line that is an address, contact or legal detail rather than a name.
ADDRESS = re.compile(
    r"^\d+\s|\b(?:road|street|st\.|lane|avenue|ave|strasse|straße|rue|via|suite|floor|tel|phone|fax|email|www\.|http)\b|@|\b\d{4,6}\b",
    re.I,
)
PERCENT = re.compile(r"(\d{1,2}(?:[.,]\d{1,2})?)\s*%")


def labels_in(text: str) -> list[re.Match[str]]:
    return list(LABEL_RE.finditer(text))


# Legal forms that end company names, and the letters OCR confuses inside them. A last word one
# look-alike letter away from a legal form ("ple", "lnc.", "Lld") is that form: the vocabulary is
# closed, so the correction cannot invent a name.
LEGAL_FORMS = [
    "Ltd",
    "LLC",
    "Inc",
    "GmbH",
    "plc",
    "Co",
    "Corp",
    "AG",
    "SA",
    "BV",
    "Limited",
    "SARL",
    "Srl",
    "Pty",
    "KG",
    "Oy",
]
_LOOKALIKES = [set(x) for x in ("ce", "l1i", "o0", "tf", "nm", "s5", "b8", "g6")]


def _lookalike(a: str, b: str) -> bool:
    return a == b or any(a in group and b in group for group in _LOOKALIKES)


def fix_legal_form(name: str) -> str:
    """'Brightpath Media ple' → 'Brightpath Media plc'; names already right are returned as they are."""
    words = name.split(" ")
    if len(words) < 2:
        return name
    last = words[-1]
    letters = [(i, c) for i, c in enumerate(last) if c.isalnum()]
    plain = "".join(c for _, c in letters)
    for form in LEGAL_FORMS:
        if plain.lower() == form.lower():
            return name
    for form in LEGAL_FORMS:
        if len(form) != len(plain) or len(form) < 2:
            continue
        diffs = [(i, a, b) for (i, a), b in zip(letters, form, strict=True) if a.lower() != b.lower()]
        if len(diffs) == 1 and _lookalike(diffs[0][1].lower(), diffs[0][2].lower()):
            position, _, wanted = diffs[0]
            fixed = last[:position] + wanted + last[position + 1 :]
            return " ".join([*words[:-1], fixed])
    return name
