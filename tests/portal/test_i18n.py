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
