"""Does a page's text layer say what its pixels show? A few of its words, spread over the page and
over its fonts, are cut out of the page image and read by the recogniser alone (no detection,
~20-30 ms a word), and what the pixels say is compared with what the layer says. This catches
invisible OCR layers of scans that are wrong or shifted, text hidden under an image, and fonts
whose unicode map lies (vision/ocr/textlayer.py decides on the figure). No Django.
"""

from __future__ import annotations

import difflib
import statistics
import unicodedata
from typing import TYPE_CHECKING

from vision.ocr.textlayer_cells import Word

if TYPE_CHECKING:
    from PIL import Image

    from vision.ocr.engine import OcrEngine

SAMPLE_WORDS = 5  # words of the layer read from the pixels to check it (~20-30 ms each)
SAMPLE_MAX = 8  # ... at most, with several fonts to check
FONT_MIN_SHARE = 0.05  # a font with less of the page's text is not checked on its own
SAMPLE_MIN_CHARS = 4  # a sampled word has at least this many letters/digits the recogniser knows


def _known(ch: str) -> bool:
    """A letter or digit the recogniser reads (Latin scripts, digits, CJK)."""
    if ch.isdigit():
        return True
    if not ch.isalpha():
        return False
    name = unicodedata.name(ch, "")
    return name.startswith(("LATIN", "CJK", "HIRAGANA", "KATAKANA"))


def _normal(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _spread(fit: list[Word], count: int) -> list[Word]:
    """Up to `count` of `fit` spread over the page, preferring words of about 8 characters (long
    enough to tell, short enough to read fast: the recogniser pads a batch to its widest)."""
    if len(fit) <= count:
        return fit
    fit = sorted(fit, key=lambda x: (x.bbox[1], x.bbox[0]))
    size = len(fit) / count
    picked: list[Word] = []
    for index in range(count):  # from each of `count` bands of the page, one word
        band = fit[int(index * size) : int((index + 1) * size)] or fit[-1:]
        fresh = [w for w in band if w.text not in {p.text for p in picked}] or band
        picked.append(max(fresh, key=lambda x: (min(len(x.text), 8), -len(x.text))))
    return picked


def _samples(found: list[Word]) -> dict[int, list[Word]]:
    """Words to read from the pixels, per font: every font carrying at least FONT_MIN_SHARE of
    the page's checkable characters gets its share of SAMPLE_WORDS (at least 2), since one font
    with a broken unicode map garbles only its own words (headings, say)."""
    fit = [w for w in found if sum(_known(ch) for ch in w.text) >= SAMPLE_MIN_CHARS and w.height >= 6]
    total = sum(len(w.text) for w in fit)
    fonts: dict[int, list[Word]] = {}
    for word in fit:
        fonts.setdefault(word.font, []).append(word)
    out = {}
    for font, group in sorted(fonts.items(), key=lambda kv: -sum(len(w.text) for w in kv[1])):
        share = sum(len(w.text) for w in group) / total
        if share < FONT_MIN_SHARE and out:
            continue
        out[font] = _spread(group, max(2, round(SAMPLE_WORDS * share)))
        if sum(len(x) for x in out.values()) >= SAMPLE_MAX:
            break
    return out


def agreement(image: Image.Image, found: list[Word], engine: OcrEngine) -> float | None:
    """How well the layer's words match what the recogniser reads in the same boxes of the
    image, 0..1: per checked font the median similarity of its sampled words, and the worst
    font's figure; None when no word can be sampled (e.g. only a script the recogniser cannot
    read)."""
    groups = _samples(found)
    sample = [word for group in groups.values() for word in group]
    if not sample:
        return None
    crops = []
    for word in sample:
        x0, y0, x1, y1 = word.bbox
        # less than a space's width sideways (~0.27 of the height), so no neighbour shows
        pad_y, pad_x = 0.2 * word.height, 0.15 * word.height
        box = (
            max(0, int(x0 - pad_x)),
            max(0, int(y0 - pad_y)),
            min(image.width, int(x1 + pad_x) + 1),
            min(image.height, int(y1 + pad_y) + 1),
        )
        crops.append(image.crop(box))
    read = iter(engine.recognize(crops))
    worst = 1.0
    for group in groups.values():
        scores = [
            difflib.SequenceMatcher(None, _normal(word.text), _normal(next(read)[0]), autojunk=False).ratio()
            for word in group
        ]
        worst = min(worst, statistics.median(scores))
    return worst
