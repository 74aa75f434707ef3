"""`manage.py extract --task invoice` with VISION_MODEL=none (an OCR-only deployment) reads with
the layout extractor alone, as with --no-vlm, instead of trying to load a model called "none"."""

from __future__ import annotations

import io
import json

from django.core.management import call_command

from tests.vision.ocr.invoices import encode, make_invoice


def test_extract_with_vision_model_none_uses_the_layout_extractor_alone(tmp_path, settings) -> None:
    settings.VISION_MODEL = "none"
    image, truth = make_invoice(53, "en")
    path = tmp_path / "invoice.png"
    path.write_bytes(encode(image.resize((image.width * 3 // 4, image.height * 3 // 4)), "PNG"))
    out, err = io.StringIO(), io.StringIO()

    call_command("extract", str(path), "--task", "invoice", "--json", stdout=out, stderr=err)

    result = json.loads(out.getvalue())
    assert result["used_vlm"] is False
    assert result["invoice_number"] == truth.invoice_number and result["total"] == str(truth.total)
    assert "VISION_MODEL=none" in err.getvalue() and "loading none" not in err.getvalue()
