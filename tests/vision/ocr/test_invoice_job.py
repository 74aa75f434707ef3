"""An invoice uploaded through /api/jobs becomes an Extraction awaiting review; an ocr job's
result has lines with boxes. Through the real worker and the tiny checkpoint (scripts/test.sh):
the random model's answer is garbage, so the extraction carries the layout result and says the
model's answer was unusable."""

import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import wait_for
from tests.vision.jobs_helpers import wait_finished
from tests.vision.ocr.invoices import encode, make_invoice
from vision.models import Extraction, ExtractionStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _upload(seed: int) -> tuple[SimpleUploadedFile, object]:
    image, truth = make_invoice(seed, "en")
    image = image.resize((image.width // 2, image.height // 2))
    return SimpleUploadedFile("invoice.png", encode(image, "PNG"), content_type="image/png"), truth


@pytest.fixture
def vlm_ready(redis_url) -> None:
    """An invoice job adds the VLM cross-check only on a worker whose model is ready (otherwise it
    is read by the layout extractor alone, flagged vlm_unavailable): wait for the test worker."""
    from vision.heartbeat import VLM, capable, heartbeats_read

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    wait_for(
        lambda: any(capable(beat, VLM) for beat in heartbeats_read(client)),
        timeout=180,
        interval=0.5,
        message="a worker with the VLM ready",
    )


def test_invoice_job_creates_an_extraction_awaiting_review(
    api_client, user_factory, redis_url, vlm_ready
) -> None:
    api_client.force_authenticate(user_factory())
    upload, truth = _upload(61)
    response = api_client.post(
        "/api/jobs", {"task": "invoice", "file": upload, "max_tokens": 16}, format="multipart"
    )
    assert response.status_code == 202, response.content
    done = wait_finished(api_client, response.json()["status_url"], timeout=240)
    assert done["status"] == "succeeded", done
    extraction = Extraction.objects.get(job_id=done["id"])
    assert done["result"]["data"]["extraction_id"] == extraction.pk
    assert extraction.status == ExtractionStatus.AWAITING_REVIEW and extraction.used_vlm
    assert extraction.fields["invoice_number"] == truth.invoice_number
    assert extraction.fields["total"] == str(truth.total)
    assert extraction.boxes["total"]
    assert any(f["code"].startswith("vlm_") for f in extraction.flags)  # garbage from random weights


def test_ocr_job_result_has_lines_with_boxes(api_client, user_factory, redis_url) -> None:
    api_client.force_authenticate(user_factory())
    upload, truth = _upload(62)
    response = api_client.post("/api/jobs", {"task": "ocr", "file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    done = wait_finished(api_client, response.json()["status_url"], timeout=240)
    assert done["status"] == "succeeded", done
    assert truth.invoice_number in done["result"]["text"]


def test_invoice_job_on_a_two_page_pdf_reads_the_totals_on_the_last_page(
    api_client, user_factory, redis_url
) -> None:
    """GIVEN a generated two-page PDF invoice (header on page 1, totals on page 2) uploaded as an
    invoice job THEN the extraction has page 1's number and page 2's total, the total's box is not
    drawn on page 1, and the job result says which page each field came from."""
    from tests.vision.ocr.invoice_gen import generate

    invoice = generate(4, "multipage", "clean")
    api_client.force_authenticate(user_factory())
    upload = SimpleUploadedFile("two-pages.pdf", invoice.data, content_type="application/pdf")
    response = api_client.post(
        "/api/jobs", {"task": "invoice", "file": upload, "max_tokens": 16}, format="multipart"
    )
    assert response.status_code == 202, response.content
    done = wait_finished(api_client, response.json()["status_url"], timeout=300)
    assert done["status"] == "succeeded", done
    extraction = Extraction.objects.get(job_id=done["id"])
    assert extraction.fields["invoice_number"] == invoice.truth.invoice_number
    assert extraction.fields["total"] == str(invoice.truth.total)
    assert extraction.boxes["invoice_number"] and extraction.boxes["total"] is None
    assert done["result"]["data"]["field_pages"]["total"] == 2
