"""Text rules of the layout extractor: a label found on a line, where its value starts and ends,
and what a seller's or buyer's name can look like. No Django.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vision.ocr.labels import COMPANY, LABEL_RE, TITLE
from vision.ocr.lines import OcrLine

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


@dataclass
class Label:
    field: str
    line: OcrLine
    index: int  # of the line in reading order
    start: int
    end: int
    value_end: int  # where the next label on the same line starts


def strip_value(text: str, start: int, end: int) -> tuple[int, int]:
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


def party_name(text: str) -> str:
    text = re.sub(r"^\s*(?:名\s*称|name)\s*[:：]?\s*", "", text.lstrip(_SEPARATORS), flags=re.I)
    return text.strip(" :：|\t")


def is_label(text: str) -> bool:
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
