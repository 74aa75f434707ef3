"""Boxes the job page draws, from the OCR and invoice result shapes the runners store."""

from vision.portal.overlays import invoice_fields, result_overlays


def test_ocr_pages_give_line_boxes_per_page() -> None:
    result = {
        "pages": [
            {"page": 1, "width": 100, "height": 50, "lines": [{"text": "a", "bbox": [1, 2, 3, 4]}]},
            {"page": 2, "lines": [{"text": "b", "box": [[0, 0], [10, 0], [10, 5], [0, 5]]}]},
        ]
    }
    assert result_overlays(result) == [
        {"page": 1, "kind": "line", "label": "a", "box": [1.0, 2.0, 3.0, 4.0]},
        {"page": 2, "kind": "line", "label": "b", "box": [0.0, 0.0, 10.0, 5.0]},
    ]
    assert invoice_fields(result) == []


def test_invoice_result_gives_field_and_item_boxes_and_the_fields() -> None:
    result = {
        "extraction_id": 7,
        "invoice_number": "INV-7",
        "total": "1200.00",
        "items": [{"description": "chair", "box": [5, 5, 9, 9]}],
        "checks": [],
        "flags": [],
        "confidence": {"invoice_number": 0.9, "total": 0.5},
        "box": {"invoice_number": [1, 1, 4, 2], "total": None},
        "page": {"width": 800, "height": 1000},
        "used_vlm": True,
    }
    assert [(o["kind"], o["label"], o["page"]) for o in result_overlays(result)] == [
        ("field", "invoice_number", 1),
        ("item", "chair", 1),
    ]
    assert invoice_fields(result) == [
        {"name": "invoice_number", "value": "INV-7", "confidence": 0.9, "has_box": True},
        {"name": "total", "value": "1200.00", "confidence": 0.5, "has_box": False},
    ]


def test_anything_else_draws_nothing() -> None:
    assert result_overlays(None) == [] and result_overlays("text") == []
    assert result_overlays({"lines": [{"text": "x", "bbox": "nope"}]}) == []
