"""The VLM layer of invoice extraction: prompt the page plus its OCR text, constrain the answer to
the invoice JSON schema, normalise it, and cross-check it against the layout extractor.

The answer is generated under `invoice_constraint()` (constrained decoding), so it is valid JSON
matching INVOICE_SCHEMA by construction and is parsed strictly; one that was cut off (max_tokens,
deadline) flags `vlm_unparseable` and keeps the layout result. Fields on which the two layers
disagree are flagged for review; a field only the VLM found is taken at low confidence and
located on the page through the OCR line where its value appears. No Django, no torch: running
the model is the caller's business (a worker's `generate_to_stream` with the constraint in its
`GenerationSpec`, or `run_on_engine` for a local engine).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from PIL import Image

from vision.engine.constraints import Constraint, json_schema_constraint
from vision.ocr.fields import Located, locate_text
from vision.ocr.invoice_types import (
    AMOUNT_FIELDS,
    DATE_FIELDS,
    SCALAR_FIELDS,
    Field,
    Flag,
    InvoiceExtraction,
    Item,
)
from vision.ocr.lines import OcrResult
from vision.ocr.normalize import money, normalize_currency, parse_amount, parse_date, unify

MAX_OCR_CHARS = 4_000  # of OCR text in the prompt; an invoice page is ~1,000
VLM_ONLY_CONFIDENCE = 0.5  # a value the layout extractor did not find: a reviewer should look

PROMPT = """You read invoices. The image is an invoice page; below is the text an OCR engine read \
from it, row by row. Answer with one JSON object and nothing else, with these keys: \
invoice_number, invoice_date (YYYY-MM-DD), due_date (YYYY-MM-DD), seller, seller_tax_id, buyer, \
buyer_tax_id, currency (ISO 4217 code), items (a list of objects with description, quantity, \
unit_price, amount), subtotal, tax, total. Amounts as plain numbers. Use null for a value that is \
not on the page.

OCR text:
{ocr_text}"""


_TEXT = {"type": ["string", "null"], "maxLength": 120}
_ID = {"type": ["string", "null"], "maxLength": 40}
_DATE = {
    "anyOf": [
        {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"},
        {"type": "null"},
    ]
}
_AMOUNT = {"type": ["number", "null"]}

# What the model must answer, enforced token by token (constrained decoding): the keys of PROMPT,
# ISO dates, ISO 4217 currency, amounts as JSON numbers, null where the page has nothing. Strings
# are bounded so an answer always ends; 50 items is more than any single page holds.
INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "invoice_number": _ID,
        "invoice_date": _DATE,
        "due_date": _DATE,
        "seller": _TEXT,
        "seller_tax_id": _ID,
        "buyer": _TEXT,
        "buyer_tax_id": _ID,
        "currency": {"anyOf": [{"type": "string", "pattern": "^[A-Z]{3}$"}, {"type": "null"}]},
        "items": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "properties": {
                    "description": {"type": "string", "maxLength": 120},
                    "quantity": _AMOUNT,
                    "unit_price": _AMOUNT,
                    "amount": _AMOUNT,
                },
                "required": ["description", "quantity", "unit_price", "amount"],
                "additionalProperties": False,
            },
        },
        "subtotal": _AMOUNT,
        "tax": _AMOUNT,
        "total": _AMOUNT,
    },
    "required": [*SCALAR_FIELDS[:8], "items", *SCALAR_FIELDS[8:]],
    "additionalProperties": False,
}


def invoice_prompt(ocr: OcrResult) -> str:
    return PROMPT.format(ocr_text=ocr.text[:MAX_OCR_CHARS])


@functools.cache
def invoice_constraint() -> Constraint:
    """INVOICE_SCHEMA as the engine's constraint: the model can only write a valid answer."""
    return json_schema_constraint(INVOICE_SCHEMA, name="invoice")


@functools.cache
def _validator():
    from jsonschema import validators

    return validators.validator_for(INVOICE_SCHEMA)(INVOICE_SCHEMA)


def parse_answer(text: str) -> dict[str, Any] | None:
    """The answer as an INVOICE_SCHEMA object, or None when it is not one.

    The answer is generated under `invoice_constraint()`, so a finished one parses as it is: no
    fences, prose or repairs to undo. None means it was cut off (max_tokens, deadline).
    """
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if _validator().is_valid(value) else None


@dataclass
class VlmInvoice:
    fields: dict[str, Any]  # normalised: str, date, Decimal or None per SCALAR_FIELDS key
    items: list[Item]


def normalize_answer(data: dict[str, Any]) -> VlmInvoice:
    """The model's JSON in the layout extractor's types: ISO dates, Decimal amounts, ISO currency."""
    lowered = {str(k).strip().lower().replace(" ", "_"): v for k, v in data.items()}
    fields: dict[str, Any] = {}
    for name in SCALAR_FIELDS:
        value = lowered.get(name)
        if isinstance(value, (dict, list)):
            value = None
        if name in DATE_FIELDS:
            fields[name] = parse_date(str(value)) if value not in (None, "") else None
        elif name in AMOUNT_FIELDS:
            fields[name] = money(parse_amount(value)) if value not in (None, "") else None
        elif name == "currency":
            fields[name] = normalize_currency(value)
        else:
            text = str(value).strip() if value is not None else ""
            fields[name] = text or None
    items = []
    for raw in lowered.get("items") or []:
        if not isinstance(raw, dict):
            continue
        quantity = parse_amount(raw.get("quantity"))
        items.append(
            Item(
                description=str(raw.get("description") or "").strip(),
                quantity=quantity,
                unit_price=money(parse_amount(raw.get("unit_price"))),
                amount=money(parse_amount(raw.get("amount"))),
                box=None,
                confidence=VLM_ONLY_CONFIDENCE,
            )
        )
    return VlmInvoice(fields, items)


def _same(name: str, a: Any, b: Any) -> bool:
    if isinstance(a, (Decimal, date)) or isinstance(b, (Decimal, date)):
        return a == b
    fold = lambda v: re.sub(r"[\s\W_]+", "", unify(str(v))).lower()  # noqa: E731
    return fold(a) == fold(b)


def _locate(ocr: OcrResult, value: Any) -> Located | None:
    """Where `value` appears on the page, written as invoices write it, if it does."""
    if isinstance(value, Decimal):
        needles = [
            f"{value:,.2f}",
            f"{value:.2f}",
            f"{value:,.2f}".replace(",", "_").replace(".", ",").replace("_", "."),
        ]
    elif isinstance(value, date):
        needles = [
            value.isoformat(),
            f"{value.year}年{value.month:02d}月{value.day:02d}日",
            f"{value.day:02d}/{value.month:02d}/{value.year}",
        ]
    else:
        needles = [str(value)]
    return locate_text(ocr, needles)


def cross_check(layout: InvoiceExtraction, ocr: OcrResult, answer_text: str | None) -> InvoiceExtraction:
    """Merge the VLM's answer into the layout result, in place, and return it.

    - no complete answer (cut off at max_tokens or the deadline): flag `vlm_unparseable`, keep
      the layout result as it is;
    - both found a field and disagree: keep the layout value (it is tied to a box), flag
      `vlm_disagrees` with both values;
    - only the VLM found a field: take it at low confidence, boxed where the OCR saw the value
      (no box if the value is nowhere on the page), flag `vlm_only`.
    """
    parsed = parse_answer(answer_text or "")
    if parsed is None:
        layout.flags.append(
            Flag(
                "*",
                "vlm_unparseable",
                "the model's answer is not a complete invoice object (cut off?); layout result kept",
            )
        )
        return layout
    vlm = normalize_answer(parsed)
    for name in SCALAR_FIELDS:
        theirs = vlm.fields.get(name)
        if theirs is None:
            continue
        ours = layout.fields.get(name)
        if ours is None:
            located = _locate(ocr, theirs)
            box, confidence = (located.box, located.confidence) if located else (None, 1.0)
            layout.fields[name] = Field(theirs, box, VLM_ONLY_CONFIDENCE * confidence, "vlm")
            where = "on the page" if located else "nowhere in the OCR text"
            layout.flags.append(Flag(name, "vlm_only", f"only the model found {name} (value {where})"))
        elif not _same(name, ours.value, theirs):
            ours.confidence = min(ours.confidence, 0.6)
            layout.flags.append(
                Flag(name, "vlm_disagrees", f"layout read {_show(ours.value)}, the model {_show(theirs)}")
            )
    if vlm.items and layout.items and len(vlm.items) != len(layout.items):
        layout.flags.append(
            Flag(
                "items",
                "vlm_disagrees",
                f"layout found {len(layout.items)} items, the model {len(vlm.items)}",
            )
        )
    elif vlm.items and layout.items:
        for n, (ours_item, theirs_item) in enumerate(zip(layout.items, vlm.items, strict=True)):
            if theirs_item.amount is not None and ours_item.amount != theirs_item.amount:
                amounts = f"amount: layout {ours_item.amount}, model {theirs_item.amount}"
                layout.flags.append(Flag(f"items[{n}]", "vlm_disagrees", amounts))
    return layout


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def run_on_engine(
    engine: Any, image: Image.Image, ocr: OcrResult, *, max_tokens: int = 1024, timeout: float = 600.0
) -> str:
    """Ask a local `vision.engine.Engine` (already started) and return its answer text.

    For the command line and tests; workers go through `generate_to_stream` so the answer
    streams and can be cancelled.
    """
    from vision.engine import ChatMessage, EngineRequest, ImagePart, SamplingParams, TextPart

    request = EngineRequest(
        request_id=f"invoice-{uuid.uuid4().hex[:12]}",
        messages=[ChatMessage("user", (ImagePart.from_image(image), TextPart(invoice_prompt(ocr))))],
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        task="invoice",
        use_prefix_cache=False,
        constraint=invoice_constraint(),
    )
    output = engine.generate(request, timeout=timeout)
    if output.error:
        raise RuntimeError(f"the model could not answer: {output.error}")
    return output.text
