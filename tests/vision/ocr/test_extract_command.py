"""`manage.py extract` on a folder of generated invoices: valid JSON per file, a bad file gives
an error for that file only and a non-zero exit code."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from tests.vision.ocr.invoices import encode, make_invoice


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("invoices")
    truths = {}
    for seed, lang, fmt in [(51, "en", "PNG"), (52, "zh", "JPEG")]:
        image, truth = make_invoice(seed, lang)
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4))
        path = root / f"{lang}.{fmt.lower()}"
        path.write_bytes(encode(image, fmt))
        truths[str(path)] = truth
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root, truths


def _run(*args: str) -> tuple[list[dict], str, int]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("extract", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()], err.getvalue(), code


def test_invoice_json_per_file_and_a_bad_file_fails_alone(folder) -> None:
    root, truths = folder
    paths = [str(root / "en.png"), str(root / "broken.jpg"), str(root / "zh.jpeg")]
    results, err, code = _run(*paths, "--task", "invoice", "--no-vlm", "--json")
    assert code == 1
    assert [r["file"] for r in results] == paths
    bad = results[1]
    assert (
        set(bad) == {"file", "error"}
        and "broken.jpg" in bad["error"]
        and "not a readable image" in bad["error"]
    )
    assert "broken.jpg" in err
    for result in (results[0], results[2]):
        truth = truths[result["file"]]
        assert result["invoice_number"] == truth.invoice_number
        assert result["invoice_date"] == truth.invoice_date
        assert result["total"] == str(truth.total)
        assert len(result["items"]) == len(truth.items)
        assert all(c["ok"] for c in result["checks"])
        assert set(result["confidence"]) == set(result["box"]) and result["box"]["total"]
        assert result["used_vlm"] is False


def test_ocr_task_prints_lines_with_boxes(folder) -> None:
    root, _ = folder
    results, _, code = _run(str(root / "en.png"), "--task", "ocr", "--json")
    assert code == 0
    lines = results[0]["lines"]
    assert any("Invoice No" in x["text"] for x in lines)
    assert all(len(x["box"]) == 4 and len(x["bbox"]) == 4 and 0 < x["confidence"] <= 1 for x in lines)


def test_a_two_page_pdf_invoice_is_read_over_both_pages(tmp_path) -> None:
    """GIVEN a generated two-page PDF invoice whose totals are on page 2 THEN the command reads the
    header fields from page 1 and the totals from page 2."""
    from tests.vision.ocr.invoice_gen import generate

    invoice = generate(4, "multipage", "clean")
    path = tmp_path / "two-pages.pdf"
    path.write_bytes(invoice.data)
    results, _, code = _run(str(path), "--task", "invoice", "--no-vlm", "--json")
    assert code == 0
    truth = invoice.truth.key_fields()
    assert {k: results[0][k] for k in truth} == truth
    assert results[0]["field_pages"]["total"] == 2 and results[0]["field_pages"]["invoice_number"] == 1
