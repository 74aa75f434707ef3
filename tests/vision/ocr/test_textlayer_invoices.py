"""Generated invoices drawn as born-digital PDFs (tests/vision/ocr/pdfgen.py `born_digital`) are
read from their text layer (vision/ocr/textlayer.py) all the way through: the invoice reader, an
invoice job on the real worker with its job and review pages, and the `extract` command; and the
portal's page sources."""

from __future__ import annotations

import pytest

from tests.vision.ocr.pdfgen import born_digital, render
from vision.ocr.textlayer import SOURCE_TEXT_LAYER, read_pdf_pages


def test_an_invoice_is_read_from_the_text_layer_of_its_pdf() -> None:
    """The invoice reader works unchanged on text-layer readings: a generated invoice drawn as a
    born-digital PDF gives its number, date and total, and the reading says where it came from."""
    from vision.ocr.pipeline import read_invoice_pages

    data, truth, _ = born_digital(5, "right_box")
    images = render(data)
    readings = [read_pdf_pages(data, dict(enumerate(images, 1)))[n] for n in range(1, len(images) + 1)]
    assert [r.source for r in readings] == [SOURCE_TEXT_LAYER]
    reading = read_invoice_pages(images, readings=readings)
    out = reading.to_dict()
    assert out["invoice_number"] == truth.invoice_number
    assert out["invoice_date"] == truth.invoice_date.isoformat()
    assert out["total"] == str(truth.total)
    assert out["page"]["source"] == SOURCE_TEXT_LAYER and out["page"]["sources"] == [SOURCE_TEXT_LAYER]
    with pytest.raises(ValueError):
        read_invoice_pages(images, readings=readings * 2)


def test_page_sources_for_the_portal() -> None:
    from vision.portal.overlays import page_sources

    ocr_job = {"pages": [{"page": 2, "source": "text_layer"}, {"page": 3, "source": "ocr"}]}
    assert page_sources(ocr_job, [2, 3]) == {2: "text_layer", 3: "ocr"}
    invoice_job = {"page": {"width": 1, "height": 1, "source": "ocr", "sources": ["ocr", "text_layer"]}}
    assert page_sources(invoice_job, [4, 5]) == {4: "ocr", 5: "text_layer"}
    assert page_sources({"page": 1, "source": "text_layer"}, [1]) == {1: "text_layer"}
    assert page_sources({"page": {"width": 1, "height": 1}}, [1]) == {}  # older results


# -- through the platform: upload, the real worker, the result, the portal pages --------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_invoice_job_on_a_born_digital_pdf_records_its_text_layer(
    api_client, user_factory, redis_url
) -> None:
    """GIVEN a born-digital invoice PDF uploaded as an invoice job THEN the worker reads it from
    its text layer (the job result's page says so), the extraction has its fields, and the job
    page and the review page show where the page's text came from."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    from accounts.roles import Role
    from tests.vision.jobs_helpers import wait_finished
    from vision.models import Extraction

    data, truth, _ = born_digital(5, "right_box")
    user = user_factory(Role.REVIEWER)
    api_client.force_authenticate(user)
    upload = SimpleUploadedFile("born-digital.pdf", data, content_type="application/pdf")
    response = api_client.post(
        "/api/jobs", {"task": "invoice", "file": upload, "max_tokens": 16}, format="multipart"
    )
    assert response.status_code == 202, response.content
    done = wait_finished(api_client, response.json()["status_url"], timeout=300)
    assert done["status"] == "succeeded", done
    result = done["result"]["data"]
    assert result["page"]["source"] == SOURCE_TEXT_LAYER and result["page"]["sources"] == [SOURCE_TEXT_LAYER]
    extraction = Extraction.objects.get(job_id=done["id"])
    assert extraction.fields["invoice_number"] == truth.invoice_number
    assert extraction.fields["total"] == str(truth.total)
    assert extraction.boxes["total"]
    browser = Client()
    browser.force_login(user)
    job_page = browser.get(f"/jobs/{done['id']}/").content.decode()
    review_page = browser.get(f"/review/{extraction.pk}/").content.decode()
    for name, html in (("job", job_page), ("review", review_page)):
        shown = '<span class="pagesource" data-source="text_layer">Read from the PDF\'s text layer</span>'
        assert shown in html, name


def test_extract_command_reads_a_pdf_from_its_text_layer(tmp_path) -> None:
    import io
    import json

    from django.core.management import call_command

    data, truth, _ = born_digital(5, "right_box")
    path = tmp_path / "invoice.pdf"
    path.write_bytes(data)
    results = {}
    for task in ("ocr", "invoice"):
        out = io.StringIO()
        call_command(
            "extract", str(path), "--task", task, "--no-vlm", "--json", stdout=out, stderr=io.StringIO()
        )
        results[task] = json.loads(out.getvalue())
    assert results["ocr"]["source"] == SOURCE_TEXT_LAYER and truth.invoice_number in results["ocr"]["text"]
    assert results["invoice"]["page"]["sources"] == [SOURCE_TEXT_LAYER]
    assert results["invoice"]["invoice_number"] == truth.invoice_number
