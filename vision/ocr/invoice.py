"""Invoice fields from OCR lines by layout: labels, neighbours, table columns and fapiao grid cells.

The first of the two layers that check each other (the VLM in `vision.ocr.vlm` is the second).
It needs no model beyond OCR, runs on every machine, and is what tests and benchmarks measure.
No Django.

Steps, per page: find label matches in every line (synonym tables in `vision.ocr.labels`); read
the value after the label on the same line, else in the cells right of it on the same row, else in
the cell below it; find the item table by its header row and assign cells to columns by x
position; read a fapiao's party blocks (名称 beside 购买方/销售方) and its 合计 / 价税合计 rows,
whose 大写 amount checks the 小写 one. Over the pages of a document: identity fields (number,
dates, parties, currency) from the first page that has them, amounts from the last. Then
normalise, infer a missing amount from the other two, run the arithmetic checks, and give every
field a box, a confidence and, where in doubt, a flag with the reason.

Dates like 11/03/2026 are read by one rule (`_date_order`): another numeric date on the document
whose day is above 12 settles the order; failing that the currency does (USD month-first, every
other currency day-first), and the date is flagged `ambiguous_date` with a lower confidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from vision.ocr.engine import BBox, OcrLine, OcrResult
from vision.ocr.labels import (
    ADDRESS,
    COLUMN_RES,
    COMPANY,
    INVOICE_TITLE,
    LABEL_RE,
    PERCENT,
    TITLE,
    fix_legal_form,
)
from vision.ocr.layout import span_box, union
from vision.ocr.normalize import (
    CURRENCY_SYMBOLS,
    detect_currency,
    find_amounts,
    money,
    parse_chinese_amount,
    parse_date,
    unify,
)
from vision.ocr.taxid import check_tax_id

SCALAR_FIELDS = (
    "invoice_number", "invoice_date", "due_date", "seller", "seller_tax_id", "buyer",
    "buyer_tax_id", "currency", "subtotal", "tax", "total",
)  # fmt: skip
AMOUNT_FIELDS = ("subtotal", "tax", "total")
DATE_FIELDS = ("invoice_date", "due_date")
IDENTITY_FIELDS = tuple(f for f in SCALAR_FIELDS if f not in AMOUNT_FIELDS)
REQUIRED = ("invoice_number", "invoice_date", "seller", "total")
LOW_CONFIDENCE = 0.8  # below this a field is flagged for a look
TOLERANCE = Decimal("0.01")  # one cent: printed amounts are rounded per line
AMBIGUOUS_DATE_FACTOR = 0.7  # an ambiguous date read by the currency's convention
CHECK_FAILED_FACTOR = 0.5
INFERRED_CONFIDENCE = 0.6  # an amount computed from the other two, not read

# How much a value found a given way is trusted, times the OCR confidence of its line.
# A seller taken from the page heading is a guess unless it looks like a company name.
SOURCE_TRUST = {
    "same_line": 1.0, "right": 0.97, "below": 0.92, "table": 0.95, "grid": 0.97,
    "heading": 0.75, "company_heading": 0.9, "symbol": 0.95, "label": 0.97, "page_symbol": 0.8,
    "words": 0.7, "legal_line": 0.82, "address_block": 0.6, "page_word": 0.7,
}  # fmt: skip
# Lines that name a person's role or thank the reader, never a party: payee, reviewer, issuer clerk.
_NOT_A_PARTY = re.compile(
    r"收款人|复核|開票人|开票人|经办人|payee|reviewer|cashier|prepared\s*by|thank\s*you|thanks|merci|vielen\s*dank|danke|"
    r"bedankt|gracias|grazie|obrigad|dzi[eę]kujemy|tack|page\s*\d|seite\s*\d|"
    # the heading of a block, not a name in it: "Address", "Adresse de l'installation", "Afleveradres"
    r"^(?:(?:billing|shipping|delivery|postal|invoice|installation)\s+)?(?:address|adresse|adres|anschrift|direcci[óo]n|indirizzo|endere[çc]o)\b|"
    r"(?:aflever|leverings|factuur|liefer|rechnungs|post)adres|^item\s+purchase$|^description$|"
    r"^(?:waren|rechnungs|liefer|zahlungs)?empf[äa]nger$|^recipient$",
    re.I,
)
_SENTENCE_WORDS = re.compile(
    r"\b(?:the|this|that|these|shown|please|you|your|we|our|is|are|will|of\s+the|für|der|die|das|und|ist|sie|wir|"
    r"le|la|les|des|est|vous|nous|pour|de\s+la|het|een|voor|wordt|u|el|los|las|para|il|per|che|è)\b",
    re.I,
)
_SEPARATORS = " :：#.-\t|"
# A seller's letterhead, never an addressee's block: its web address and bank details.
_LETTERHEAD = re.compile(r"www\.|https?:|\biban\b|\bbic\b|\bswift\b", re.I)
_LABEL_FIELD = {"tax_total": "tax"}  # label groups that name another group's field
_QUALIFIER = re.compile(
    r"(?:\b(?:incl|inkl|including|inclusive|inklusive|excl|exkl|excluding|exclusive|exklusive|zzgl|zuz[üu]glich|"
    r"hors|avec|sans|con|sin|com|sem|met|zonder)\.?)\s*$",
    re.I,
)
# A series prefix of letters may stand apart ("FT 2024/88", Portugal's legal form of a number).
_NUMBER = r"(?:[A-Z]{1,4} (?=[A-Za-z0-9\-/_.]*\d))?[A-Za-z0-9][A-Za-z0-9\-/_.]*\d[A-Za-z0-9\-/_.]*"
_TAX_ID = r"[A-Z0-9][A-Z0-9\-. ]{5,}[A-Z0-9]"
# A part of an identifier made of letters and only the digits OCR mistakes for letters ("S0" in
# "S0-43406-B"): one of the two readings is wrong, and only the reviewer can tell which.
_LOOKALIKE_SEGMENT = re.compile(
    r"(?<![A-Za-z0-9])(?=[A-Za-z]*[0158])(?=[0158]*[A-Za-z])[A-Za-z0158]+(?![A-Za-z0-9])"
)
_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})(?!\d)")


@dataclass
class Field:
    value: Any  # str, date or Decimal
    box: BBox | None  # where the value is on its page
    confidence: float
    source: str  # how it was found: a key of SOURCE_TRUST, "inferred" or "vlm"
    page: int = 1  # page number (1-based) the box is on


@dataclass
class Item:
    description: str
    quantity: Decimal | None
    unit_price: Decimal | None
    amount: Decimal | None
    box: BBox | None
    confidence: float
    page: int = 1


@dataclass
class Check:
    name: str  # item_<n>_qty_x_unit | items_sum_subtotal | items_sum_total_minus_tax | subtotal_plus_tax_total | tax_rate | total_in_words
    ok: bool
    expected: str  # what the other numbers imply
    found: str  # what the page says
    fields: tuple[str, ...]  # the fields the check involves


@dataclass
class Flag:
    field: str
    code: str  # missing | low_confidence | check_failed | ambiguous_date | inferred | vlm_disagrees | vlm_unparseable | ...
    reason: str


@dataclass
class InvoiceExtraction:
    fields: dict[str, Field] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    # What the checks read besides the fields: tax rates printed beside the tax, a fapiao's total
    # in words. Stored with the extraction, so a reviewer's correction reruns every check.
    rates: list[Decimal] = field(default_factory=list)
    words_total: Decimal | None = None

    def value(self, name: str) -> Any:
        found = self.fields.get(name)
        return found.value if found else None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of the command line and the API: field names at the top level, ISO dates,
        amounts as decimal strings, plus items, checks, flags, confidence, box and the page of
        each box."""
        out: dict[str, Any] = {name: json_value(self.value(name)) for name in SCALAR_FIELDS}
        out["items"] = [
            {
                "description": item.description,
                "quantity": json_value(item.quantity),
                "unit_price": json_value(item.unit_price),
                "amount": json_value(item.amount),
                "box": list(item.box) if item.box else None,
                "confidence": round(item.confidence, 3),
                "page": item.page,
            }
            for item in self.items
        ]
        out["checks"] = [
            {"name": c.name, "ok": c.ok, "expected": c.expected, "found": c.found, "fields": list(c.fields)}
            for c in self.checks
        ]
        out["flags"] = [{"field": f.field, "code": f.code, "reason": f.reason} for f in self.flags]
        out["check_inputs"] = {
            "rates": [str(r) for r in self.rates],
            "words_total": json_value(self.words_total),
        }
        out["confidence"] = {name: round(f.confidence, 3) for name, f in self.fields.items()}
        out["box"] = {name: list(f.box) if f.box else None for name, f in self.fields.items()}
        out["field_pages"] = {name: f.page for name, f in self.fields.items()}
        return out


def json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass
class _Label:
    field: str
    line: OcrLine
    index: int  # of the line in reading order
    start: int
    end: int
    value_end: int  # where the next label on the same line starts


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while (
        start < end
        and text[start] in _SEPARATORS + "（）()%0123456789"
        and not _value_starts(text, start, end)
    ):
        start += 1
    while end > start and text[end - 1] in " :：\t|":
        end -= 1
    return start, end


def _value_starts(text: str, start: int, end: int) -> bool:
    # After "VAT (20%):" the percentage is part of the label; a digit that starts a real value
    # (an invoice number, a date, an amount) is not followed by '%'.
    rest = text[start:end]
    return bool(rest[:1].isdigit()) and not re.match(r"\d+(?:[.,]\d+)?\s*%", rest)


def _party_name(text: str) -> str:
    text = re.sub(r"^\s*(?:名\s*称|name)\s*[:：]?\s*", "", text.lstrip(_SEPARATORS), flags=re.I)
    return text.strip(" :：|\t")


def _is_label(text: str) -> bool:
    return bool(LABEL_RE.match(text.strip(" |:")))


def plausible_party(text: str) -> bool:
    """Whether `text` can be a seller's or buyer's name: not a title ("FACTUUR."), not a label,
    not a sentence ("the charges shown on this page."), not a role line (收款人, "Thank you"), not
    a lower-case fragment ("case", "tal"), not a number."""
    name = text.strip(" :：|\t")
    if not name or TITLE.search(name) or _NOT_A_PARTY.search(name):
        return False
    if LABEL_RE.fullmatch(name.strip(" .:")):
        return False
    if re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", name):
        return len(name) >= 2
    letters = re.findall(r"[^\W\d_]", name)
    if len(letters) < 2 or len(letters) < len(name.replace(" ", "")) / 3:
        return False
    words = name.split()
    if len(words) > 9:
        return False
    sentence_words = len(_SENTENCE_WORDS.findall(name))
    if COMPANY.search(name):
        return sentence_words < 3
    if sentence_words >= 2 or (name.endswith(".") and len(words) >= 4) or re.search(r"[.!?]\s+[a-z]", name):
        return False
    return not (name[0].islower() and not re.search(r"\.[a-z]{2,}\b", name))  # "bol.com" is a name


def _date_order(ocrs: list[OcrResult], currency: str | None) -> tuple[bool, bool]:
    """(day first?, settled by the document itself?) for numeric dates such as 11/03/2026.

    A numeric date on any page whose first number exceeds 12 is day-first, whose second does is
    month-first: that settles it. Otherwise the currency's convention decides (USD month-first,
    everything else day-first) and ambiguous dates are flagged."""
    for ocr in ocrs:
        for line in ocr.lines:
            for m in _NUMERIC_DATE.finditer(unify(line.text)):
                if int(m[1]) > 12 and int(m[2]) <= 12:
                    return True, True
                if int(m[2]) > 12 and int(m[1]) <= 12:
                    return False, True
    return currency != "USD", False


class _Reader:
    """One page's extraction; instance state keeps the helper signatures short."""

    def __init__(self, ocr: OcrResult, *, page: int, dayfirst: bool, order_settled: bool) -> None:
        self.lines = ocr.lines
        self.ocr = ocr
        self.page = page
        self.dayfirst = dayfirst
        self.order_settled = order_settled
        self.result = InvoiceExtraction()
        self.table_rows: set[int] = set()
        self.header_rows: set[int] = set()
        self.columns: list[tuple[str, float, float]] = []
        self.found_on: dict[str, OcrLine] = {}  # field → the line its value was read from
        # amount field → (value, line, start, end, source) from each of its labels, reading order
        self.amounts: dict[str, list[tuple[Decimal, OcrLine, int, int, str]]] = {}
        self.rates: list[Decimal] = []  # tax rates printed beside a tax label
        self.words_total: tuple[Decimal, OcrLine] | None = None  # a fapiao's 大写 amount
        heights = sorted(x.height for x in self.lines) or [20.0]
        self.line_height = heights[len(heights) // 2]
        self.rows: dict[int, list[OcrLine]] = {}
        for line in self.lines:
            self.rows.setdefault(line.row, []).append(line)

    # -- values next to labels ------------------------------------------------------------

    def _candidates(self, label: _Label) -> list[tuple[OcrLine, int, int, str]]:
        """(line, start, end, source) places where the label's value may be, best first: the rest
        of the label's line, the cells right of it on its row (up to the next label), the cell
        below it (same column, next two rows, up to the next label)."""
        text = label.line.text
        start, end = _strip(text, label.end, label.value_end)
        out = []
        if end > start:
            out.append((label.line, start, end, "same_line"))
        if label.value_end < len(text):
            return out  # another label follows on the same line: the value cannot be further right
        for other in self._right_of(label.line):
            if _is_label(other.text):
                break
            s, e = _strip(other.text, 0, len(other.text))
            if e > s:
                out.append((other, s, e, "right"))
        for other in self._below(label.line):
            if _is_label(other.text):
                break
            s, e = _strip(other.text, 0, len(other.text))
            if e > s:
                out.append((other, s, e, "below"))
        return out

    def _right_of(self, line: OcrLine) -> list[OcrLine]:
        found = [x for x in self.rows.get(line.row, []) if x.bbox[0] >= line.bbox[2] - 4 and x is not line]
        return sorted(found, key=lambda x: x.bbox[0])

    def _below(self, line: OcrLine) -> list[OcrLine]:
        """Lines in the next two rows that share the label's column: they overlap it horizontally,
        or start within two line heights of its left edge."""
        out = []
        for row in (line.row + 1, line.row + 2):
            cells = self.rows.get(row, [])
            if not cells or min(x.bbox[1] for x in cells) - line.bbox[3] > 3 * self.line_height:
                break
            same_column = []
            for other in cells:
                overlap = min(line.bbox[2], other.bbox[2]) - max(line.bbox[0], other.bbox[0])
                if overlap > 0 or abs(other.bbox[0] - line.bbox[0]) < 2 * self.line_height:
                    same_column.append((-overlap, other))
            if same_column:
                # the nearest line below; of lines about as near, the one most under the label
                top = min(other.bbox[1] for _, other in same_column)
                near = [c for c in same_column if c[1].bbox[1] - top < 0.5 * self.line_height]
                out.append(min(near, key=lambda x: x[0])[1])
                if row == line.row + 1:
                    break
        return out

    def _set(self, name: str, value: Any, line: OcrLine, start: int, end: int, source: str) -> Field | None:
        if name in self.result.fields or value in (None, ""):
            return None
        box = span_box(line, start, end)
        found = Field(value, box, line.confidence * SOURCE_TRUST[source], source, self.page)
        self.result.fields[name] = found
        self.found_on[name] = line
        return found

    def read_text(self, label: _Label, name: str, pattern: str | None = None) -> None:
        for line, start, end, source in self._candidates(label):
            chunk = line.text[start:end]
            if pattern:
                m = re.search(pattern, unify(chunk))
                if not m:
                    continue
                self._set(name, m.group().strip(" .-"), line, start + m.start(), start + m.end(), source)
            else:
                name_text = _party_name(chunk)
                if not re.search(r"[^\W\d_]{2}", name_text) or ADDRESS.search(name_text):
                    continue
                if not plausible_party(name_text):
                    continue
                offset = chunk.find(name_text)
                self._set(
                    name,
                    fix_legal_form(name_text),
                    line,
                    start + offset,
                    start + offset + len(name_text),
                    source,
                )
            return

    def read_date(self, label: _Label, name: str) -> None:
        for line, start, end, source in self._candidates(label):
            chunk = line.text[start:end]
            value = parse_date(chunk, dayfirst=self.dayfirst)
            if value is None:
                continue
            found = self._set(name, value, line, start, end, source)
            m = _NUMERIC_DATE.search(unify(chunk))
            ambiguous = m is not None and int(m[1]) <= 12 and int(m[2]) <= 12 and int(m[1]) != int(m[2])
            if found and ambiguous and not self.order_settled:
                found.confidence *= AMBIGUOUS_DATE_FACTOR
                order = "day-first" if self.dayfirst else "month-first"
                self.result.flags.append(
                    Flag(name, "ambiguous_date", f"'{chunk.strip()}' could be day- or month-first; read {order} by the currency")
                )  # fmt: skip
            return

    def read_amount(self, label: _Label, name: str) -> None:
        """Note the label's amount as a candidate for `name`; `_choose_amounts` decides."""
        found = []
        for line, start, end, source in self._candidates(label):
            amount = _last_amount(line.text[start:end])
            if amount is not None:
                found.append((amount, line, start, source))
                if source != "right":
                    break
        # Cells right of a label hold a row of figures ("Total | 1 | 278.61 | 40.39 | 319.00"): the
        # label's amount is the last of them, the one with cents before a bare count.
        right = [x for x in found if x[3] == "right"]
        if right and found[0][3] == "right":
            cents = [x for x in right if re.search(r"[.,]\d{2}$", x[1].text[x[2] + x[0][1] : x[2] + x[0][2]])]
            found = [(cents or right)[-1]]
        if found:
            (value, s, e), line, start, source = found[0]
            self.amounts.setdefault(name, []).append((money(value), line, start + s, start + e, source))

    def _choose_amounts(self) -> None:
        """Subtotal, tax and total from their labels' candidates: the first of each in reading
        order, unless another choice adds up (subtotal + tax = total) where the first ones do not:
        a page may print an "incl. VAT" subtotal beside the net amount, or a second total."""
        names = [n for n in AMOUNT_FIELDS if n not in self.result.fields]
        options = {n: self.amounts.get(n, [])[:4] for n in names}
        chosen = {n: opts[0] for n, opts in options.items() if opts}
        fixed = {n: self.result.fields[n].value for n in AMOUNT_FIELDS if n in self.result.fields}

        def value(name: str, pick: dict) -> Decimal | None:
            return fixed.get(name, pick[name][0] if name in pick else None)

        def adds_up(pick: dict) -> bool:
            sub, tax, total = (value(n, pick) for n in AMOUNT_FIELDS)
            return None not in (sub, tax, total) and abs(sub + tax - total) <= TOLERANCE

        if not adds_up(chosen) and all(n in fixed or options.get(n) for n in AMOUNT_FIELDS):
            best = None
            for sub in options.get("subtotal") or [None]:
                for tax in options.get("tax") or [None]:
                    for total in options.get("total") or [None]:
                        pick = {
                            n: c
                            for n, c in zip(AMOUNT_FIELDS, (sub, tax, total), strict=True)
                            if c is not None
                        }
                        if adds_up(pick) and (value("tax", pick) or 0) > 0:
                            rank = sum(options[n].index(c) for n, c in pick.items())
                            if best is None or rank < best[0]:
                                best = (rank, pick)
            if best is not None:
                chosen = best[1]
        for name, (amount, line, start, end, source) in chosen.items():
            self._set(name, amount, line, start, end, source)
        for name in names:  # another label gave a different amount: the reviewer should know
            others = {c[0] for c in options.get(name, [])} - {chosen[name][0]} if name in chosen else set()
            if others and not adds_up(chosen):
                found = self.result.fields[name]
                found.confidence *= AMBIGUOUS_DATE_FACTOR
                self.result.flags.append(Flag(name, "ambiguous_amount", f"other {name} amounts on the page: {', '.join(str(x) for x in sorted(others))}"))  # fmt: skip

    def _rate(self, label: _Label) -> None:
        for m in PERCENT.finditer(unify(label.line.text[label.start : label.value_end + 8])):
            rate = Decimal(m[1].replace(",", ".")) / 100
            if 0 < rate < Decimal("0.5"):
                self.rates.append(rate)

    # -- the page ---------------------------------------------------------------------------

    def run(self) -> InvoiceExtraction:
        self.read_table()
        self.labels = []
        for index, line in enumerate(self.lines):
            if line.row in self.header_rows:
                continue
            for m in LABEL_RE.finditer(line.text):
                kind = _LABEL_FIELD.get(m.lastgroup or "", m.lastgroup or "")
                # "Gesamtsumme (inkl. USt)", "Total (excl. VAT)": the tax word qualifies the label
                # before it and is no label of its own
                previous = self.labels[-1] if self.labels and self.labels[-1].line is line else None
                if kind == "tax" and previous and _QUALIFIER.search(line.text[previous.end : m.start()]):
                    continue
                self.labels.append(_Label(kind, line, index, m.start(), m.end(), 0))
        for n, label in enumerate(self.labels):
            following = self.labels[n + 1] if n + 1 < len(self.labels) else None
            same = following is not None and following.line is label.line
            label.value_end = following.start if same else len(label.line.text)
        self.read_fapiao()
        for label in self.labels:
            kind = label.field
            if kind == "invoice_number":
                self.read_text(label, kind, _NUMBER)
            elif kind in DATE_FIELDS:
                self.read_date(label, kind)
            elif kind in AMOUNT_FIELDS:
                if label.line.row in self.table_rows:
                    continue
                if kind == "tax":
                    self._rate(label)
                self.read_amount(label, kind)
            elif kind in ("seller", "buyer"):
                self.read_text(label, kind)
            elif kind == "currency":
                for line, start, end, _source in self._candidates(label):
                    if code := detect_currency(line.text[start:end]):
                        self._set("currency", code, line, start, end, "label")
                        break
        self._choose_amounts()
        self._seller_from_heading()
        self._buyer_from_address_block()
        self._tax_ids()
        self._currency()
        for party in ("seller", "buyer"):
            if party not in self.result.fields and any(x.field == party for x in self.labels):
                self.result.flags.append(Flag(party, "missing", f"a {party} label is on the page but no name was read"))  # fmt: skip
        # An invoice is addressed to someone; a receipt often is not. A page titled as an invoice
        # with no buyer read has a garbled or unread buyer label, not a blank one.
        titled = any(INVOICE_TITLE.match(line.text.strip()) for line in self.lines)
        if (
            titled
            and "buyer" not in self.result.fields
            and not any(f.field == "buyer" for f in self.result.flags)
        ):
            self.result.flags.append(Flag("buyer", "missing", "the page is titled an invoice but no buyer was read"))  # fmt: skip
        number = self.result.fields.get("invoice_number")
        if number is not None and _LOOKALIKE_SEGMENT.search(number.value):
            number.confidence *= AMBIGUOUS_DATE_FACTOR
            self.result.flags.append(Flag("invoice_number", "lookalike_characters", f"'{number.value}' mixes letters with digits OCR confuses with them (0/O, 1/I, 5/S, 8/B)"))  # fmt: skip
        return self.result

    def _seller_from_heading(self) -> None:
        """No seller label: invoices put the issuer's name at the top, in the largest type. Take,
        from the lines above the first labelled field, the tallest that is neither a title, a
        label nor an address, preferring one that looks like a company."""
        if "seller" in self.result.fields or self.page > 1:
            return
        first_label_y = min(
            (x.line.bbox[1] for x in self.labels if x.field not in ("other_ref", "tax_id")),
            default=self.ocr.height / 3,
        )
        top = [
            x
            for x in self.lines
            if x.bbox[1] < max(first_label_y, self.ocr.height * 0.08) and x.bbox[1] < self.ocr.height / 3
            and not TITLE.search(x.text.strip()) and not _is_label(x.text)
            and not ADDRESS.search(x.text) and re.search(r"[^\W\d_]{2}", x.text)
            and plausible_party(x.text)
        ]  # fmt: skip
        line = max(top, key=lambda x: x.height * (1.3 if COMPANY.search(x.text) else 1.0)) if top else None
        if line is not None and COMPANY.search(line.text):
            self._set(
                "seller", fix_legal_form(line.text.strip(" :|")), line, 0, len(line.text), "company_heading"
            )
            return
        # No company name at the top: the issuer's legal line (a footer "Free SAS au capital de …",
        # a letterhead "Müller GmbH · Hauptstr. 1") names it with its legal form.
        if self._seller_from_legal_line():
            return
        if line is not None:
            self._set("seller", fix_legal_form(line.text.strip(" :|")), line, 0, len(line.text), "heading")

    def _seller_from_legal_line(self) -> bool:
        """The first line outside the buyer's block that starts with a name ending in a legal form
        (up to a separator: ',', ' - ', '·', '|'). Lines after a buyer label belong to the buyer."""
        buyer_rows = set()
        for label in self.labels:
            if label.field == "buyer":
                buyer_rows |= {label.line.row, label.line.row + 1, label.line.row + 2, label.line.row + 3}
        buyer = self.result.fields.get("buyer")
        for line in self.lines:
            if line.row in buyer_rows or line.row in self.table_rows or _is_label(line.text):
                continue
            head = re.split(r"\s[-–·|•]\s|;|\s{2,}", line.text.strip())[0].strip()
            forms = list(COMPANY.finditer(head))
            if not forms:
                continue
            end = forms[0].end()
            for form in forms[1:]:  # "Müller GmbH & Co. KG", "Foo Co., Ltd."
                if form.start() - end > 6:
                    break
                end = form.end()
            name = head[:end].strip(" ,")
            if forms[0].start() == 0:  # "SARL au capital de …": the name is a line of the block above
                above = self._name_above(line)
                if above is None:
                    continue
                line, name = above, above.text.strip(" ,:|")
            if len(name.split()) > 6 or not plausible_party(name):
                continue
            if buyer is not None and name.lower() == str(buyer.value).lower():
                continue
            at = line.text.find(name)
            self._set("seller", fix_legal_form(name), line, max(at, 0), max(at, 0) + len(name), "legal_line")
            return True
        return False

    def _blocks(self, lines: list[OcrLine]) -> list[list[OcrLine]]:
        """Lines stacked into blocks: each next line starts at the same x, a similar height, less
        than a line's height below the last (an address block, a letterhead)."""
        blocks: list[list[OcrLine]] = []
        used: set[int] = set()
        ordered = sorted(lines, key=lambda x: (x.bbox[1], x.bbox[0]))
        for start in ordered:
            if id(start) in used:
                continue
            block = [start]
            while True:
                last = block[-1]
                following = [
                    x for x in ordered
                    if id(x) not in used and x is not last and x.bbox[1] > last.bbox[1] + 0.5 * last.height
                    and abs(x.bbox[0] - last.bbox[0]) <= 0.6 * last.height
                    and x.bbox[1] - last.bbox[3] <= 0.9 * last.height
                    and 0.7 <= x.height / max(last.height, 1.0) <= 1.4
                ]  # fmt: skip
                if not following:
                    break
                block.append(min(following, key=lambda x: x.bbox[1]))
                used.add(id(block[-1]))
            used.add(id(start))
            blocks.append(block)
        return blocks

    def _buyer_from_address_block(self) -> None:
        """No buyer label: the addressee's block (a name over a street and a postcode, as in an
        envelope window) in the upper half of the first page, not the seller's own block. The
        evidence is the layout alone, so the buyer is flagged `no_label`."""
        if "buyer" in self.result.fields or self.page > 1:
            return
        top = min([self.ocr.height * 0.5, *(min(x.bbox[1] for x in self.rows[r]) for r in self.header_rows)])
        pool = [
            x for x in self.lines
            if x.bbox[1] < top and x.row not in self.table_rows and x.row not in self.header_rows
        ]  # fmt: skip
        seller_line = self.found_on.get("seller")
        seller = str(self.result.value("seller") or "").casefold()
        for block in self._blocks(pool):
            if not 2 <= len(block) <= 7 or seller_line in block:
                continue
            if any(_LETTERHEAD.search(x.text) for x in block):
                continue
            if not any(ADDRESS.search(x.text) for x in block[1:]) and not self._under_return_address(
                block[0], seller
            ):
                continue
            first = block[0]
            name = first.text.strip(" ,:|")
            if ADDRESS.search(name) or _is_label(name) or TITLE.search(name) or not plausible_party(name):
                continue
            if seller and (name.casefold() in seller or seller in name.casefold()):
                continue
            found = self._set("buyer", fix_legal_form(name), first, 0, len(first.text), "address_block")
            if found is not None:
                self.result.flags.append(Flag("buyer", "no_label", f"no buyer label on the page: '{name}' is the first line of an address block"))  # fmt: skip
            return

    def _under_return_address(self, first: OcrLine, seller: str) -> bool:
        """Whether an envelope window's return address (the seller's name and address on one small
        line) sits just above `first`, in its column."""
        if not seller:
            return False
        return any(
            0 <= first.bbox[1] - x.bbox[3] < 10 * first.height
            and abs(x.bbox[0] - first.bbox[0]) < 2 * first.height
            and seller in x.text.casefold()
            and ADDRESS.search(x.text)
            for x in self.lines
        )

    def _name_above(self, line: OcrLine) -> OcrLine | None:
        """The nearest line above `line` in its block (a footer's lines run close together) that
        can be a name: an address or contact line between them is passed over."""
        index = self.lines.index(line)
        bottom = line.bbox[1]
        for other in reversed(self.lines[:index]):
            if other.row == line.row or min(other.bbox[2], line.bbox[2]) <= max(other.bbox[0], line.bbox[0]):
                continue
            if bottom - other.bbox[3] > 1.5 * max(line.height, other.height):
                return None
            if (
                not ADDRESS.search(other.text)
                and not _is_label(other.text)
                and plausible_party(other.text.strip())
            ):
                return other
            bottom = min(bottom, other.bbox[1])
        return None

    def _tax_ids(self) -> None:
        """A tax id belongs to the party whose name or label comes last before it."""
        anchors = sorted(
            (self.lines.index(self.found_on[p]), p) for p in ("seller", "buyer") if p in self.found_on
        )
        for label in self.labels:
            if label.field != "tax_id":
                continue
            before = [party for index, party in anchors if index <= label.index]
            party = before[-1] if before else "seller"
            if f"{party}_tax_id" in self.result.fields:
                party = "buyer" if party == "seller" else "seller"
            self.read_text(label, f"{party}_tax_id", _TAX_ID)
            name = f"{party}_tax_id"
            found = self.result.fields.get(name)
            if found and sum(c.isdigit() for c in found.value) < 4:
                del self.result.fields[name]
            elif found and (checked := check_tax_id(found.value)) is not None and not checked.valid:
                found.confidence *= CHECK_FAILED_FACTOR
                self.result.flags.append(Flag(name, "invalid_tax_id", f"'{found.value}' is not a valid {checked.kind.replace('_', ' ')} number: its check digits do not match"))  # fmt: skip

    def _currency(self) -> None:
        """The code or symbol printed with the totals, else with any amount, else anywhere."""
        if "currency" in self.result.fields:
            return
        for name in ("total", "subtotal", "tax"):
            if name not in self.found_on:
                continue
            row = self.found_on[name].row
            for line in self.rows.get(row, []):
                if code := detect_currency(line.text):
                    self._set("currency", code, line, 0, len(line.text), "symbol")
                    self.result.fields["currency"].box = self.result.fields[name].box
                    return
        for line in self.lines:
            if line.row in self.header_rows:
                continue
            if (code := detect_currency(line.text)) and find_amounts(line.text):
                self._set("currency", code, line, 0, len(line.text), "page_symbol")
                return
        for line in self.lines:  # a code in the text, beside no amount: a weak sign
            if code := detect_currency(line.text):
                self._set("currency", code, line, 0, len(line.text), "page_word")
                return

    # -- fapiao grid ------------------------------------------------------------------------

    def read_fapiao(self) -> None:
        """A Chinese VAT fapiao: the parties are 名称 cells inside blocks labelled 购买方 / 销售方
        (often printed vertically, one character per OCR line); the 合计 row holds the subtotal
        under 金额 and the tax under 税额; 价税合计 holds the total in words (大写) and in figures
        (小写)."""
        names = [x for x in self.lines if re.match(r"\s*名\s*称\s*[:：]", x.text)]
        if names:
            self._fapiao_parties(names)
        for _, cells in sorted(self.rows.items()):
            text = "".join(x.text for x in cells)
            if re.search(r"(?<!价税)合\s*计", text) and "subtotal" not in self.result.fields:
                self._fapiao_sum_row(cells)
            if "价税合计" in text or "大写" in text:
                self._fapiao_total_row(cells[0])

    def _fapiao_parties(self, names: list[OcrLine]) -> None:
        markers = [
            (x, "buyer" if re.search(r"购|买", x.text) else "seller")
            for x in self.lines
            if re.search(r"购|买|销|售", x.text) and len(x.text.strip()) <= 6
        ]
        assigned: dict[str, OcrLine] = {}
        for line in names:
            near = [
                (line.bbox[0] - m.bbox[2], party)
                for m, party in markers
                if m.bbox[2] <= line.bbox[0] + 4
                and m.bbox[1] - 3 * self.line_height <= line.center_y <= m.bbox[3] + 3 * self.line_height
            ]
            if near:
                party = min(near)[1]
            else:  # 数电发票: buyer left, seller right; older forms: buyer above, seller below
                others = [x for x in names if x is not line]
                if others and others[0].row == line.row:
                    party = "buyer" if line.bbox[0] < others[0].bbox[0] else "seller"
                elif others:
                    party = "buyer" if line.row < others[0].row else "seller"
                else:
                    party = "buyer"
            if party in assigned:
                party = "seller" if party == "buyer" else "buyer"
            assigned[party] = line
        for party, line in assigned.items():
            name = _party_name(line.text)
            if not name:
                right = self._right_of(line)
                if not right:
                    continue
                line, name = right[0], right[0].text.strip()
            offset = line.text.find(name)
            self._set(party, name, line, offset, offset + len(name), "grid")

    def _fapiao_sum_row(self, cells: list[OcrLine]) -> None:
        amounts = []
        for cell in cells:
            for value, s, e in find_amounts(cell.text):
                if "%" in cell.text[e : e + 2]:
                    continue
                amounts.append((value, cell, s, e))
        if not amounts:
            return
        tax_x = next((c[1] for c in self.columns if c[0] == "tax_amount"), None)
        if len(amounts) >= 2:
            (sub, sub_line, s1, e1), (tax, tax_line, s2, e2) = amounts[0], amounts[-1]
            if tax_x is not None and abs(span_box(sub_line, s1, e1)[2] - tax_x) < abs(
                span_box(tax_line, s2, e2)[2] - tax_x
            ):
                return  # the first amount sits under 税额: this is not a 金额 | 税额 row
            self._set("subtotal", money(sub), sub_line, s1, e1, "grid")
            self._set("tax", money(tax), tax_line, s2, e2, "grid")
        else:
            value, line, s, e = amounts[0]
            self._set("subtotal", money(value), line, s, e, "grid")

    def _fapiao_total_row(self, label_line: OcrLine) -> None:
        cells = [label_line, *self._right_of(label_line)]
        text = " ".join(x.text for x in cells)
        if (words := parse_chinese_amount(text)) is not None:
            self.words_total = (words, label_line)
        for n, cell in enumerate(cells):
            at = cell.text.find("小写")
            if at < 0 and n and "小写" not in text:
                at = 0
            if at < 0:
                continue
            amount = _last_amount(cell.text[at:])
            if amount is None and n + 1 < len(cells):
                cell, at = cells[n + 1], 0
                amount = _last_amount(cell.text)
            if amount is not None:
                value, s, e = amount
                self._set("total", money(value), cell, at + s, at + e, "grid")
                return

    # -- the item table -------------------------------------------------------------------

    def read_table(self) -> None:
        header = None
        for row, cells in sorted(self.rows.items()):
            columns = self._header_columns(cells)
            names = {c[0] for c in columns}
            if len(names & {"description", "quantity", "unit_price", "amount"}) >= 3:
                header = row, columns
                break
        if header is None:
            return
        header_row, self.columns = header
        self.header_rows.add(header_row)
        last_y = max(x.bbox[3] for x in self.rows[header_row])
        for row in range(header_row + 1, header_row + 3):
            # column titles set on two or three lines ("Preis" over "ohne MwSt."): no figures,
            # right under the header
            cells = self.rows.get(row, [])
            if not cells or any(re.search(r"\d", x.text) for x in cells):
                break
            if min(x.bbox[1] for x in cells) - last_y > 0.5 * self.line_height:
                break
            self.header_rows.add(row)
            last_y = max(x.bbox[3] for x in cells)
        for row, cells in sorted(self.rows.items()):
            if row <= max(self.header_rows):
                continue
            if (
                LABEL_RE.search(" ".join(x.text for x in cells))
                or LABEL_RE.search("".join(x.text for x in cells))
                or min(x.bbox[1] for x in cells) - last_y > 3 * self.line_height
            ):
                break
            item = self._item(cells, self.columns)
            if item is None:
                break
            self.result.items.append(item)
            self.table_rows.add(row)
            last_y = max(x.bbox[3] for x in cells)

    def _header_columns(self, cells: list[OcrLine]) -> list[tuple[str, float, float]]:
        """(column, x centre, right edge) of each column title found in a row."""
        found: list[tuple[str, float, float]] = []
        for line in cells:
            taken: list[tuple[int, int]] = []
            for name, pattern in COLUMN_RES:
                for m in pattern.finditer(line.text):
                    if any(s < m.end() and m.start() < e for s, e in taken):
                        continue
                    taken.append((m.start(), m.end()))
                    box = span_box(line, m.start(), m.end())
                    if not any(name == f[0] for f in found):
                        found.append((name, (box[0] + box[2]) / 2, box[2]))
        return sorted(found, key=lambda c: c[1])

    def _item(self, cells: list[OcrLine], columns: list[tuple[str, float, float]]) -> Item | None:
        description: list[str] = []
        numbers: dict[str, Decimal] = {}
        desc_x = next((c[1] for c in columns if c[0] == "description"), 0.0)
        numeric = [c for c in columns if c[0] not in ("description",)]
        first_numeric_x = min((c[1] for c in numeric), default=float("inf"))
        for line in cells:
            text = line.text
            if line.bbox[2] < (desc_x + first_numeric_x) / 2 + (first_numeric_x - desc_x) / 4:
                description.append(text.strip())  # the whole cell sits in the description column
                continue
            cursor = 0
            for value, start, end in find_amounts(text):
                if text[cursor:start].strip(" :$€£¥￥") and re.search(r"[^\W\d_]", text[cursor:start]):
                    description.append(text[cursor:start].strip())
                box = span_box(line, start, end)
                centre, right = (box[0] + box[2]) / 2, box[2]
                column = min(numeric, key=lambda c: min(abs(c[1] - centre), abs(c[2] - right)))
                if column[0] in ("quantity", "unit_price", "amount") and column[0] not in numbers:
                    numbers[column[0]] = value
                cursor = end
            if re.search(r"[^\W\d_]", text[cursor:]):
                description.append(text[cursor:].strip())
        if not numbers:
            return None  # a text-only row below the table (notes) ends it
        return Item(
            description=" ".join(d for d in description if d),
            quantity=numbers.get("quantity"),
            unit_price=money(numbers["unit_price"]) if "unit_price" in numbers else None,
            amount=money(numbers["amount"]) if "amount" in numbers else None,
            box=union([x.bbox for x in cells]),
            confidence=min(x.confidence for x in cells) * SOURCE_TRUST["table"],
            page=self.page,
        )


def _last_amount(chunk: str) -> tuple[Decimal, int, int] | None:
    """The amount a label's value holds: the last number that is not a percentage, preferring
    one with decimals (a total) over a bare integer (a count, a day); its span includes a
    currency symbol or code glued before it."""
    found = [
        a for a in find_amounts(chunk, spaced=True) if not chunk[a[2] : a[2] + 2].strip().startswith("%")
    ]
    if not found:
        return None
    with_cents = [a for a in found if re.search(r"[.,]\d{2}$", chunk[a[1] : a[2]])]
    value, s, e = (with_cents or found)[-1]
    while s > 0 and not chunk[s - 1].isspace() and chunk[s - 1] not in ":：|":
        s -= 1
    if s > 0 and chunk[s - 1] == " " and chunk[:s].rstrip()[-1:] in CURRENCY_SYMBOLS:
        s -= 2
    return value, max(s, 0), e


# -- the document -----------------------------------------------------------------------------


def extract_invoice(ocr: OcrResult) -> InvoiceExtraction:
    """The layout extractor on one page: fields, items, checks and flags."""
    return extract_invoice_pages([ocr])


def extract_invoice_pages(ocrs: list[OcrResult]) -> InvoiceExtraction:
    """The layout extractor on a document's pages: identity fields from the first page that has
    them, amounts from the last (totals close a multi-page invoice), items in page order."""
    currency = next((c for o in ocrs if (c := detect_currency(o.text))), None)
    dayfirst, settled = _date_order(ocrs, currency)
    readers = [
        _Reader(ocr, page=n, dayfirst=dayfirst, order_settled=settled) for n, ocr in enumerate(ocrs, start=1)
    ]
    pages = [reader.run() for reader in readers]
    result = InvoiceExtraction()
    for page in pages:
        result.items.extend(page.items)
        result.flags.extend(
            f for f in page.flags if f.field in IDENTITY_FIELDS and f.field not in result.fields
        )
        for name in IDENTITY_FIELDS:
            if name in page.fields and name not in result.fields:
                result.fields[name] = page.fields[name]
    rates: list[Decimal] = []
    words_total = None
    for reader, page in reversed(list(zip(readers, pages, strict=True))):
        if any(name in page.fields for name in AMOUNT_FIELDS):
            for name in AMOUNT_FIELDS:
                if name in page.fields:
                    result.fields[name] = page.fields[name]
            rates = reader.rates
            words_total = reader.words_total[0] if reader.words_total else None
            break
    _infer_amounts(result)
    result.rates, result.words_total = rates, words_total
    result.checks = invoice_checks(result)
    _flag_doubts(result)
    return result


def invoice_checks(result: InvoiceExtraction) -> list[Check]:
    """Every check of an invoice, from its fields, items and check inputs: the one function the
    pipeline and a reviewer's correction (vision.services.extractions) both run."""
    return arithmetic_checks(
        items=result.items,
        subtotal=result.value("subtotal"),
        tax=result.value("tax"),
        total=result.value("total"),
        rates=result.rates,
        words_total=result.words_total,
    )


def checks_from_json(values: dict[str, Any], inputs: dict[str, Any]) -> list[Check]:
    """`invoice_checks` over stored JSON: an extraction's fields (decimal strings, items as
    dicts) and its `check_inputs`."""

    def dec(value: Any) -> Decimal | None:
        if value in (None, ""):
            return None
        try:
            return Decimal(str(value))
        except ArithmeticError:
            return None

    result = InvoiceExtraction(
        fields={
            name: Field(dec(values.get(name)), None, 1.0, "reviewer")
            for name in AMOUNT_FIELDS
            if dec(values.get(name)) is not None
        },
        items=[
            Item(
                str(x.get("description") or ""),
                dec(x.get("quantity")),
                dec(x.get("unit_price")),
                dec(x.get("amount")),
                None,
                1.0,
            )
            for x in values.get("items") or []
            if isinstance(x, dict)
        ],  # fmt: skip
        rates=[r for r in (dec(x) for x in inputs.get("rates") or []) if r is not None],
        words_total=dec(inputs.get("words_total")),
    )
    return invoice_checks(result)


def _infer_amounts(result: InvoiceExtraction) -> None:
    """One of subtotal, tax and total missing: compute it from the other two (flagged)."""
    sub, tax, total = (result.value(n) for n in AMOUNT_FIELDS)
    amounts = [x.amount for x in result.items]
    if sub is None and (tax is None or total is None) and amounts and None not in amounts:
        sub = money(sum(amounts, Decimal("0")))
        result.fields["subtotal"] = Field(sub, None, INFERRED_CONFIDENCE, "inferred")
        result.flags.append(
            Flag("subtotal", "inferred", "subtotal not found on the page; the sum of the items")
        )
    inferred = None
    if total is None and sub is not None and tax is not None:
        inferred = ("total", sub + tax)
    elif tax is None and sub is not None and total is not None and total >= sub:
        inferred = ("tax", total - sub)
    elif sub is None and tax is not None and total is not None and total >= tax:
        inferred = ("subtotal", total - tax)
    if inferred:
        name, value = inferred
        result.fields[name] = Field(money(value), None, INFERRED_CONFIDENCE, "inferred")
        result.flags.append(
            Flag(name, "inferred", f"{name} not found on the page; computed from the other amounts")
        )


def _flag_doubts(result: InvoiceExtraction) -> None:
    flags = result.flags
    wanted = REQUIRED + (("subtotal", "tax") if "total" in result.fields else ())
    for name in wanted:
        if name not in result.fields:
            flags.append(Flag(name, "missing", f"no {name.replace('_', ' ')} found on the page"))
    for check in result.checks:
        if check.ok:
            continue
        for name in check.fields:
            if name in result.fields:
                result.fields[name].confidence *= CHECK_FAILED_FACTOR
            flags.append(Flag(name, "check_failed", f"{check.name}: expected {check.expected}, page says {check.found}"))  # fmt: skip
    for name, found in result.fields.items():
        if found.confidence < LOW_CONFIDENCE and not any(f.field == name for f in flags):
            flags.append(Flag(name, "low_confidence", f"confidence {found.confidence:.2f} (found by {found.source})"))  # fmt: skip


def arithmetic_checks(
    *,
    items: list[Item],
    subtotal: Decimal | None,
    tax: Decimal | None,
    total: Decimal | None,
    rates: list[Decimal] | None = None,
    words_total: Decimal | None = None,
) -> list[Check]:
    """qty × unit = amount per item, items sum to the subtotal, subtotal + tax = total, the tax is
    the printed rate of the subtotal, and a fapiao's total in words equals the one in figures.

    When the page has no subtotal, the items are checked against total − tax instead. The tax
    rate check allows one cent per item (taxes rounded per line) and at least one cent.
    """
    checks = []
    for n, item in enumerate(items, start=1):
        if item.quantity is not None and item.unit_price is not None and item.amount is not None:
            expected = money(item.quantity * item.unit_price)
            checks.append(Check(f"item_{n}_qty_x_unit", abs(expected - item.amount) <= TOLERANCE, str(expected), str(item.amount), (f"items[{n - 1}]",)))  # fmt: skip
    amounts = [x.amount for x in items if x.amount is not None]
    if amounts and len(amounts) == len(items):
        items_sum = money(sum(amounts, Decimal("0")))
        if (
            subtotal is not None
            and total is not None
            and abs(items_sum - subtotal) > TOLERANCE
            and abs(items_sum - total) <= TOLERANCE
        ):
            # the items are printed with tax included (B2C pages): they sum to the total
            checks.append(Check("items_sum_total", True, str(items_sum), str(total), ("items", "total")))
        elif subtotal is not None:
            checks.append(Check("items_sum_subtotal", abs(items_sum - subtotal) <= TOLERANCE, str(items_sum), str(subtotal), ("items", "subtotal")))  # fmt: skip
        elif total is not None and tax is not None:
            net = money(total - tax)
            checks.append(Check("items_sum_total_minus_tax", abs(items_sum - net) <= TOLERANCE, str(items_sum), str(net), ("items", "tax", "total")))  # fmt: skip
    if subtotal is not None and tax is not None and total is not None:
        expected = money(subtotal + tax)
        checks.append(Check("subtotal_plus_tax_total", abs(expected - total) <= TOLERANCE, str(expected), str(total), ("subtotal", "tax", "total")))  # fmt: skip
    if rates and subtotal is not None and tax is not None:
        rate = rates[0]
        expected = money(subtotal * rate)
        slack = TOLERANCE * max(1, len(items))
        checks.append(Check("tax_rate", abs(expected - tax) <= slack, f"{expected} ({rate * 100:g}% of {subtotal})", str(tax), ("subtotal", "tax")))  # fmt: skip
    if words_total is not None and total is not None:
        checks.append(Check("total_in_words", words_total == total, str(words_total), str(total), ("total",)))
    return checks
