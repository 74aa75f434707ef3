"""Reading a document type's fields: the prompt, and where on the page the answer's values are.

The model answers under the type's JSON schema (constrained decoding), so the answer is valid by
construction; what it cannot say is where a value came from. `locate_values` finds each string
(and number) of the answer in the OCR lines, so the reviewer sees its box on the page, and the
values that appear nowhere are flagged. No Django, no torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from vision.ocr.layout import BBox, span_box
from vision.ocr.lines import OcrResult
from vision.ocr.normalize import unify

MAX_OCR_CHARS = 6_000  # of page text in the prompt; the engine bounds the prompt in tokens anyway
MIN_LOCATE_CHARS = 2  # a one-character value ("a", "1") matches almost any line: not located

PROMPT = """{instruction}

Read the document in the image and answer with one JSON object matching this JSON schema:
{schema}

Use the document's own words for text fields. Use null where the document has no value.

OCR text of the page:
{ocr_text}"""


def extract_prompt(*, instruction: str, schema: dict[str, Any], ocr: OcrResult) -> str:
    return PROMPT.format(
        instruction=instruction.strip() or "Extract the fields of this document.",
        schema=json.dumps(schema, ensure_ascii=False),
        ocr_text=ocr.text[:MAX_OCR_CHARS],
    )


@dataclass(frozen=True)
class Located:
    box: BBox
    confidence: float  # the OCR line's recogniser score


def value_paths(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, leaf) for every string and number in an answer: `seller`, `items[0].name`."""
    if isinstance(value, dict):
        out = []
        for key, sub in value.items():
            out.extend(value_paths(sub, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(value, list):
        out = []
        for index, sub in enumerate(value):
            out.extend(value_paths(sub, f"{path}[{index}]"))
        return out
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [(path, value)]
    return []


def locate_text(ocr: OcrResult, needles: list[str], *, ignore_case: bool = False) -> Located | None:
    """Where the first OCR line (in reading order) that contains one of `needles` holds it: the
    box of that part of the line and the line's confidence. Lines are compared after `unify`
    (and lower-cased with `ignore_case`: the needles are then given lower-cased); within a line
    the first needle found wins."""
    for line in ocr.lines:
        text = unify(line.text)  # same length as line.text, so offsets map to its box
        if ignore_case:
            text = text.lower()
        for needle in needles:
            at = text.find(needle)
            if at >= 0:
                return Located(span_box(line, at, at + len(needle)), line.confidence)
    return None


def locate_value(ocr: OcrResult, value: str | int | float) -> Located | None:
    """The box of the first OCR line that contains `value` (case-insensitive)."""
    needle = re.sub(r"\s+", " ", unify(str(value))).strip().lower()
    if len(needle) < MIN_LOCATE_CHARS:
        return None
    return locate_text(ocr, [needle], ignore_case=True)


def locate_values(ocr: OcrResult, answer: dict[str, Any]) -> dict[str, Located | None]:
    """path → where the value is on the page, or None where it is nowhere in the OCR text."""
    return {path: locate_value(ocr, leaf) for path, leaf in value_paths(answer)}
