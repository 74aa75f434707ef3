"""The Simplified Chinese catalog: every message translated, and the committed .mo (what runs;
no gettext tools needed at runtime) compiled from the current .po."""

import gettext
import re
from pathlib import Path

LOCALE = Path(__file__).resolve().parents[2] / "locale" / "zh_Hans" / "LC_MESSAGES"


def _po_entries() -> dict[str, str]:
    entries = {}
    for block in LOCALE.joinpath("django.po").read_text(encoding="utf-8").split("\n\n"):
        parts = re.split(r"^msgstr ", block, flags=re.M)
        if len(parts) != 2 or "msgid " not in parts[0]:
            continue

        def text(chunk: str) -> str:
            return "".join(
                bytes(m, "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")
                for m in re.findall(r'"(.*)"', chunk)
            )

        entries[text(parts[0].split("msgid ", 1)[1])] = text(parts[1])
    return entries


def test_every_message_is_translated_and_compiled() -> None:
    entries = {msgid: msgstr for msgid, msgstr in _po_entries().items() if msgid}
    assert len(entries) > 150
    assert not [msgid for msgid, msgstr in entries.items() if not msgstr], "untranslated messages"
    with LOCALE.joinpath("django.mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = [msgid for msgid, msgstr in entries.items() if compiled.gettext(msgid) != msgstr]
    assert not stale, f"django.mo is older than django.po; run compilemessages: {stale[:5]}"


def test_page_sources_and_the_e_invoice_view_render_in_chinese() -> None:
    """Where a page's text came from (text layer, OCR; an e-invoice's XML) and the rendering of an
    XML e-invoice on the review page are in the catalog: rendered in zh-hans, none of their
    English text is left."""
    from django.template.loader import render_to_string
    from django.utils import translation
    from django.utils.translation import gettext

    with translation.override("zh-hans"):
        text_layer = render_to_string("portal/_page_source.html", {"source": "text_layer"})
        ocr = render_to_string("portal/_page_source.html", {"source": "ocr"})
        einvoice = render_to_string(
            "portal/_einvoice.html",
            {"values": {"items": [{"description": "x", "quantity": "1", "unit_price": "2", "amount": "2"}]}},
        )
    assert "从 PDF 文本层读取" in text_layer and "text layer" not in text_layer
    assert "通过 OCR 识别" in ocr and "Read by" not in ocr
    english = [
        "Seller",
        "Buyer",
        "Invoice number",
        "Invoice date",
        "Due date",
        "Currency",
        "Description",
        "Qty",
        "Unit price",
        "Amount",
        "Subtotal",
        "Tax",
        "Total",
        "has no page",
    ]
    assert [word for word in english if word in einvoice] == []
    assert "销售方" in einvoice and "合计" in einvoice
    with translation.override("zh-hans"):
        assert gettext("Read from the e-invoice XML") == "从电子发票 XML 读取"
