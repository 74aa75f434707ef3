"""Invoice fields from OCR lines by layout: labels, neighbours and the item table's columns.

The first of the two layers that check each other (the VLM in `vision.ocr.vlm` is the second).
It needs no model beyond OCR, runs on every machine, and is what tests and benchmarks measure.
No Django.

Steps: find label matches in every line (`Invoice No`, `开票日期`, `价税合计`...), read the value
after the label on the same line, else right of it on the same row, else below it; find the
item table by its header row and assign cells to columns by x position; normalise numbers,
dates and currency; run the arithmetic checks; give every field a box on the page, a
confidence and, where in doubt, a flag with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from vision.ocr.engine import BBox, OcrLine, OcrResult
from vision.ocr.layout import below, right_of, span_box, union
from vision.ocr.normalize import (
    date_is_ambiguous,
    detect_currency,
    find_amounts,
    money,
    parse_date,
    unify,
)

SCALAR_FIELDS = (
    "invoice_number", "invoice_date", "due_date", "seller", "seller_tax_id", "buyer",
    "buyer_tax_id", "currency", "subtotal", "tax", "total",
)  # fmt: skip
AMOUNT_FIELDS = ("subtotal", "tax", "total")
DATE_FIELDS = ("invoice_date", "due_date")
REQUIRED = ("invoice_number", "invoice_date", "seller", "total")
LOW_CONFIDENCE = 0.8  # below this a field is flagged for a look
TOLERANCE = Decimal("0.01")  # one cent: printed amounts are rounded per line

# Label patterns, tried in this order at each position of a line (Python's alternation picks the
# first alternative that matches there): so "Subtotal" is not "Total", "VAT No" is not "VAT",
# "Due Date" is not "Date" and "价税合计" is not "合计".
LABELS: list[tuple[str, str]] = [
    ("invoice_number", r"invoice\s*(?:no\b\.?|number|num\b|#)|inv\.?\s*(?:no\b|#)|bill\s*no\b|发票号码|发票号|票据号码"),
    ("due_date", r"due\s*date|payment\s*due|due\s*by|到期日期?|付款期限"),
    ("invoice_date", r"invoice\s*date|date\s*of\s*issue|issue\s*date|开票日期|\bdate\b|日期"),
    ("tax_id", r"vat\s*(?:no\b\.?|number|reg(?:istration)?\b\.?|id\b)|tax\s*(?:id|no\b\.?|number)|\btin\b|\babn\b|gst\s*(?:no\b|number)|纳税人识别号|统一社会信用代码|税号"),
    ("subtotal", r"sub\s*-?\s*total|net\s*(?:amount|total)|total\s*(?:excl|before\s*tax)|金额合计|(?<!价税)合计"),
    ("total", r"grand\s*total|total\s*due|amount\s*due|balance\s*due|total\s*amount|\btotal\b|价税合计"),
    ("tax", r"sales\s*tax|\bvat\b|\bgst\b|\btax\b|税额"),
    ("seller", r"\b(?:from|seller|supplier|vendor|sold\s*by)\b|销售方|销方|卖方"),
    ("buyer", r"bill(?:ed)?\s*to|\bbuyer\b|\bcustomer\b|sold\s*to|购买方|购方|买方"),
]  # fmt: skip
_LABEL_RE = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in LABELS), re.I)

COLUMNS: list[tuple[str, str]] = [
    ("description", r"description|\bitems?\b|product|service|名称|项目|货物"),
    ("quantity", r"\bqty\b|quantity|数量"),
    ("unit_price", r"unit\s*price|\bprice\b|\brate\b|单价"),
    ("amount", r"\bamount\b|line\s*total|\btotal\b|金额"),
    ("other", r"\bunit\b|\buom\b|tax\s*rate|单位|规格型号|税率|税额"),
]
_COLUMN_RES = [(name, re.compile(pattern, re.I)) for name, pattern in COLUMNS]
_TITLE = re.compile(r"^(?:tax\s*)?invoice$|^receipt$|发票$", re.I)
_COMPANY = re.compile(r"\b(?:ltd|llc|inc|gmbh|co|corp|corporation|limited|plc|s\.?a|ag|bv)\b\.?|公司", re.I)
_SEPARATORS = " :：#.-\t"

# How much a value found a given way is trusted, times the OCR confidence of its line.
# A seller taken from the page heading is a guess unless it looks like a company name.
SOURCE_TRUST = {
    "same_line": 1.0, "right": 0.95, "below": 0.9, "table": 0.95,
    "heading": 0.7, "company_heading": 0.85, "symbol": 0.9, "page_symbol": 0.6,
}  # fmt: skip


@dataclass
class Field:
    value: Any  # str, date or Decimal
    box: BBox | None  # where the value is on the page
    confidence: float
    source: str  # how it was found: a key of SOURCE_TRUST


@dataclass
class Item:
    description: str
    quantity: Decimal | None
    unit_price: Decimal | None
    amount: Decimal | None
    box: BBox | None
    confidence: float


@dataclass
class Check:
    name: str  # items_sum_subtotal | subtotal_plus_tax_total | item_<n>_qty_x_unit
    ok: bool
    expected: str  # what the other numbers imply
    found: str  # what the page says
    fields: tuple[str, ...]  # the fields the check involves


@dataclass
class Flag:
    field: str
    code: str  # missing | low_confidence | check_failed | ambiguous_date | vlm_disagrees | vlm_unparseable
    reason: str


@dataclass
class InvoiceExtraction:
    fields: dict[str, Field] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    def value(self, name: str) -> Any:
        found = self.fields.get(name)
        return found.value if found else None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of the command line and the API: field names at the top level, ISO dates,
        amounts as decimal strings, plus items, checks, flags, confidence and box."""
        out: dict[str, Any] = {name: json_value(self.value(name)) for name in SCALAR_FIELDS}
        out["items"] = [
            {
                "description": item.description,
                "quantity": json_value(item.quantity),
                "unit_price": json_value(item.unit_price),
                "amount": json_value(item.amount),
                "box": list(item.box) if item.box else None,
                "confidence": round(item.confidence, 3),
            }
            for item in self.items
        ]
        out["checks"] = [
            {"name": c.name, "ok": c.ok, "expected": c.expected, "found": c.found, "fields": list(c.fields)}
            for c in self.checks
        ]
        out["flags"] = [{"field": f.field, "code": f.code, "reason": f.reason} for f in self.flags]
        out["confidence"] = {name: round(f.confidence, 3) for name, f in self.fields.items()}
        out["box"] = {name: list(f.box) if f.box else None for name, f in self.fields.items()}
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


def _labels(lines: list[OcrLine], skip_rows: set[int]) -> list[_Label]:
    found = []
    for index, line in enumerate(lines):
        if line.row in skip_rows:
            continue
        matches = [m for m in _LABEL_RE.finditer(line.text)]
        for n, m in enumerate(matches):
            value_end = matches[n + 1].start() if n + 1 < len(matches) else len(line.text)
            found.append(_Label(m.lastgroup or "", line, index, m.start(), m.end(), value_end))
    return found


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while (
        start < end
        and text[start] in _SEPARATORS + "（）()%0123456789"
        and not _value_starts(text, start, end)
    ):
        start += 1
    while end > start and text[end - 1] in " :：\t":
        end -= 1
    return start, end


def _value_starts(text: str, start: int, end: int) -> bool:
    # After "VAT (20%):" the percentage is part of the label; a digit that starts a real value
    # (an invoice number, a date, an amount) is not followed by '%' and ')'.
    rest = text[start:end]
    return bool(rest[:1].isdigit()) and not re.match(r"\d+(?:[.,]\d+)?\s*%", rest)


def _party_name(text: str) -> str:
    return re.sub(r"^(?:名\s*称|name)\s*[:：]?\s*", "", text.strip(_SEPARATORS), flags=re.I).strip()


class _Reader:
    """One page's extraction; instance state keeps the helper signatures short."""

    def __init__(self, ocr: OcrResult) -> None:
        self.lines = ocr.lines
        self.ocr = ocr
        self.result = InvoiceExtraction()
        self.table_rows: set[int] = set()
        self.found_on: dict[str, OcrLine] = {}  # field → the line its value was read from

    # -- values next to labels ------------------------------------------------------------

    def _candidates(self, label: _Label, *, allow_below: bool) -> list[tuple[OcrLine, int, int, str]]:
        """(line, start, end, source) places where the label's value may be, best first."""
        text = label.line.text
        start, end = _strip(text, label.end, label.value_end)
        out = []
        if end > start:
            out.append((label.line, start, end, "same_line"))
        label_lines = {x.line.text for x in self.labels}
        for other in right_of(label.line, self.lines)[:1]:
            if not _LABEL_RE.match(other.text):
                s, e = _strip(other.text, 0, len(other.text))
                out.append((other, s, e, "right"))
        if allow_below:
            for other in below(label.line, self.lines, max_rows=1):
                if other.text not in label_lines:
                    out.append((other, 0, len(other.text), "below"))
        return out

    def _set(self, name: str, value: Any, line: OcrLine, start: int, end: int, source: str) -> None:
        if name in self.result.fields or value in (None, ""):
            return
        box = span_box(line, start, end)
        self.result.fields[name] = Field(value, box, line.confidence * SOURCE_TRUST[source], source)
        self.found_on[name] = line

    def read_text(
        self, label: _Label, name: str, pattern: str | None = None, *, allow_below: bool = False
    ) -> None:
        for line, start, end, source in self._candidates(label, allow_below=allow_below):
            chunk = line.text[start:end]
            if pattern:
                m = re.search(pattern, unify(chunk))
                if not m:
                    continue
                self._set(name, m.group().strip(), line, start + m.start(), start + m.end(), source)
            else:
                name_text = _party_name(chunk)
                if not re.search(r"[^\W\d_]", name_text):
                    continue
                offset = chunk.find(name_text)
                self._set(name, name_text, line, start + offset, start + offset + len(name_text), source)
            return

    def read_date(self, label: _Label, name: str, dayfirst: bool) -> None:
        for line, start, end, source in self._candidates(label, allow_below=False):
            chunk = line.text[start:end]
            value = parse_date(chunk, dayfirst=dayfirst)
            if value:
                self._set(name, value, line, start, end, source)
                if date_is_ambiguous(chunk):
                    self.result.flags.append(
                        Flag(
                            name,
                            "ambiguous_date",
                            f"'{chunk.strip()}' could be read day-first or month-first",
                        )
                    )
                return

    def read_amount(self, label: _Label, name: str) -> None:
        for line, start, end, source in self._candidates(label, allow_below=False):
            chunk = line.text[start:end]
            amounts = [a for a in find_amounts(chunk) if not chunk[a[2] : a[2] + 1].strip().startswith("%")]
            if amounts:
                value, s, e = amounts[-1]
                # a currency symbol or code just before the number is part of the value's box
                while s > 0 and not chunk[s - 1].isspace() and chunk[s - 1] not in ":：":
                    s -= 1
                self._set(name, money(value), line, start + s, start + e, source)
                return

    # -- the page ---------------------------------------------------------------------------

    def run(self) -> InvoiceExtraction:
        self.read_table()
        self.labels = _labels(self.lines, self.header_rows)
        dayfirst = self._dayfirst()
        anchors: list[tuple[int, str]] = []  # (line index, party) in reading order
        for label in self.labels:
            kind = label.field
            if kind == "invoice_number":
                self.read_text(label, kind, r"[A-Za-z0-9][A-Za-z0-9\-/_.]*\d[A-Za-z0-9\-/_.]*")
            elif kind in DATE_FIELDS:
                self.read_date(label, kind, dayfirst)
            elif kind in AMOUNT_FIELDS:
                if label.line.row in self.table_rows:
                    continue
                self.read_amount(label, kind)
            elif kind in ("seller", "buyer"):
                anchors.append((label.index, kind))
                self.read_text(label, kind, allow_below=True)
        self._seller_from_heading(anchors)
        self._tax_ids(anchors)
        self._currency()
        self.run_checks()
        self.flag_doubts()
        return self.result

    def _dayfirst(self) -> bool:
        for line in self.lines:
            for m in re.finditer(r"(?<!\d)(\d{1,2})[/.-](\d{1,2})[/.-]\d{2,4}", unify(line.text)):
                if int(m[1]) > 12:
                    return True
                if int(m[2]) > 12:
                    return False
        return detect_currency(self.ocr.text) != "USD"

    def _seller_from_heading(self, anchors: list[tuple[int, str]]) -> None:
        """No seller label: invoices put the issuer's name at the top; take the first line of the
        top quarter that is neither a title nor a label, preferring one that looks like a company."""
        if "seller" in self.result.fields:
            return
        labelled = {id(x.line) for x in self.labels}
        top = [
            (index, x)
            for index, x in enumerate(self.lines)
            if x.bbox[1] < self.ocr.height / 4 and id(x) not in labelled and not _TITLE.search(x.text.strip())
            and re.search(r"[^\W\d_]{2}", x.text)
        ]  # fmt: skip
        if not top:
            return
        index, line = next(((i, x) for i, x in top if _COMPANY.search(x.text)), top[0])
        source = "company_heading" if _COMPANY.search(line.text) else "heading"
        self._set("seller", line.text.strip(), line, 0, len(line.text), source)
        anchors.append((index, "seller"))

    def _tax_ids(self, anchors: list[tuple[int, str]]) -> None:
        """A tax id belongs to the party whose name or label comes last before it."""
        for label in self.labels:
            if label.field != "tax_id":
                continue
            before = [party for index, party in sorted(anchors) if index <= label.index]
            party = before[-1] if before else "seller"
            if f"{party}_tax_id" in self.result.fields:
                party = "buyer" if party == "seller" else "seller"
            self.read_text(label, f"{party}_tax_id", r"[A-Z0-9][A-Z0-9\- ]{5,}[A-Z0-9]")
            found = self.result.fields.get(f"{party}_tax_id")
            if found and sum(c.isdigit() for c in found.value) < 4:
                del self.result.fields[f"{party}_tax_id"]

    def _currency(self) -> None:
        """The code or symbol printed with the totals, else the first one anywhere on the page."""
        for name in ("total", "subtotal", "tax"):
            if name not in self.found_on:
                continue
            row = self.found_on[name].row
            for line in self.lines:
                if line.row == row and (code := detect_currency(line.text)):
                    self._set("currency", code, line, 0, len(line.text), "symbol")
                    self.result.fields["currency"].box = self.result.fields[name].box
                    return
        for line in self.lines:
            if code := detect_currency(line.text):
                self._set("currency", code, line, 0, len(line.text), "page_symbol")
                return

    # -- the item table -------------------------------------------------------------------

    def read_table(self) -> None:
        self.header_rows: set[int] = set()
        rows: dict[int, list[OcrLine]] = {}
        for line in self.lines:
            rows.setdefault(line.row, []).append(line)
        header = None
        for row, cells in sorted(rows.items()):
            columns = self._header_columns(cells)
            names = {c[0] for c in columns}
            if len(names & {"description", "quantity", "unit_price", "amount"}) >= 3:
                header = row, columns
                break
        if header is None:
            return
        header_row, columns = header
        self.header_rows.add(header_row)
        heights = sorted(x.height for x in self.lines) or [20.0]
        line_height = heights[len(heights) // 2]
        last_y = max(x.bbox[3] for x in rows[header_row])
        for row, cells in sorted(rows.items()):
            if row <= header_row:
                continue
            if (
                any(_LABEL_RE.search(x.text) for x in cells)
                or min(x.bbox[1] for x in cells) - last_y > 3 * line_height
            ):
                break
            item = self._item(cells, columns)
            if item is None:
                break
            self.result.items.append(item)
            self.table_rows.add(row)
            last_y = max(x.bbox[3] for x in cells)

    def _header_columns(self, cells: list[OcrLine]) -> list[tuple[str, float, float]]:
        """(column, x centre, right edge) of each column title found in a row."""
        found = []
        for line in cells:
            for name, pattern in _COLUMN_RES:
                for m in pattern.finditer(line.text):
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
            amounts = find_amounts(text)
            cursor = 0
            for value, start, end in amounts:
                if text[cursor:start].strip(" :$€£¥￥") and re.search(r"[^\W\d_]", text[cursor:start]):
                    description.append(text[cursor:start].strip())
                box = span_box(line, start, end)
                centre, right = (box[0] + box[2]) / 2, box[2]
                column = min(numeric, key=lambda c: min(abs(c[1] - centre), abs(c[2] - right)))
                if column[0] != "other" and column[0] not in numbers:
                    numbers[column[0]] = value
                cursor = end
            if re.search(r"[^\W\d_]", text[cursor:]):
                description.append(text[cursor:].strip())
        if not description and not numbers:
            return None
        if not numbers:
            return None  # a text-only row below the table (notes) ends it
        return Item(
            description=" ".join(d for d in description if d),
            quantity=numbers.get("quantity"),
            unit_price=money(numbers["unit_price"]) if "unit_price" in numbers else None,
            amount=money(numbers["amount"]) if "amount" in numbers else None,
            box=union([x.bbox for x in cells]),
            confidence=min(x.confidence for x in cells) * SOURCE_TRUST["table"],
        )

    # -- checks and doubts ------------------------------------------------------------------

    def run_checks(self) -> None:
        self.result.checks = arithmetic_checks(
            items=self.result.items,
            subtotal=self.result.value("subtotal"),
            tax=self.result.value("tax"),
            total=self.result.value("total"),
        )

    def flag_doubts(self) -> None:
        flags = self.result.flags
        for name in REQUIRED:
            if name not in self.result.fields:
                flags.append(Flag(name, "missing", f"no {name.replace('_', ' ')} found on the page"))
        for check in self.result.checks:
            if not check.ok:
                flags.append(
                    Flag(
                        check.fields[-1],
                        "check_failed",
                        f"{check.name}: expected {check.expected}, page says {check.found}",
                    )
                )
                for name in check.fields:
                    if name in self.result.fields:
                        self.result.fields[name].confidence *= 0.5
        for name, found in self.result.fields.items():
            if found.confidence < LOW_CONFIDENCE and not any(f.field == name for f in flags):
                flags.append(
                    Flag(
                        name, "low_confidence", f"confidence {found.confidence:.2f} (found by {found.source})"
                    )
                )


def arithmetic_checks(
    *, items: list[Item], subtotal: Decimal | None, tax: Decimal | None, total: Decimal | None
) -> list[Check]:
    """qty × unit = amount per item, items sum to the subtotal, subtotal + tax = total.

    When the page has no subtotal, the items are checked against total − tax instead.
    """
    checks = []
    for n, item in enumerate(items, start=1):
        if item.quantity is not None and item.unit_price is not None and item.amount is not None:
            expected = money(item.quantity * item.unit_price)
            checks.append(Check(f"item_{n}_qty_x_unit", abs(expected - item.amount) <= TOLERANCE, str(expected), str(item.amount), (f"items[{n - 1}]",)))  # fmt: skip
    amounts = [x.amount for x in items if x.amount is not None]
    if amounts and len(amounts) == len(items):
        items_sum = money(sum(amounts, Decimal("0")))
        if subtotal is not None:
            checks.append(Check("items_sum_subtotal", abs(items_sum - subtotal) <= TOLERANCE, str(items_sum), str(subtotal), ("items", "subtotal")))  # fmt: skip
        elif total is not None and tax is not None:
            net = money(total - tax)
            checks.append(Check("items_sum_total_minus_tax", abs(items_sum - net) <= TOLERANCE, str(items_sum), str(net), ("items", "tax", "total")))  # fmt: skip
    if subtotal is not None and tax is not None and total is not None:
        expected = money(subtotal + tax)
        checks.append(Check("subtotal_plus_tax_total", abs(expected - total) <= TOLERANCE, str(expected), str(total), ("subtotal", "tax", "total")))  # fmt: skip
    return checks


def extract_invoice(ocr: OcrResult) -> InvoiceExtraction:
    """The layout extractor: invoice fields, items, checks and flags from one page's OCR."""
    return _Reader(ocr).run()
