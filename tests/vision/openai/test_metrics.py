"""GET /metrics on the live server: token-protected, and its counters move after real requests
(web series from the uvicorn process, worker series from the test worker's heartbeat)."""

from __future__ import annotations

import os

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.vision.openai.conftest import SERVER_ENV

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {SERVER_ENV['METRICS_TOKEN']}"}


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{url}/metrics", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "metrics-test-token"}]
)
def test_metrics_need_the_token(live_api, headers):
    response = httpx.get(f"{live_api.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 401
    assert "vllm:" not in response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_metrics_off_without_a_token(client):
    assert client.get("/metrics", HTTP_HOST="localhost").status_code == 404


def test_counters_move_after_a_request(live_api, ready_worker, make_api_user):
    worker = os.environ["TEST_WORKER_NAME"]
    model = "qwen3-vl-2b-instruct"
    chat, mine = "v1/chat/completions", {"worker": worker, "model_name": model}
    before = _scrape(live_api.url)
    assert _value(before, "docplatform_engine_state", worker=worker, state="ready") == 1
    assert ("docplatform_queue_depth", (("queue", "vision"),)) in before
    assert _value(before, "docplatform_redis_up") == 1

    _, key = make_api_user()
    client = openai.OpenAI(base_url=f"{live_api.url}/v1", api_key=key, max_retries=0, timeout=120)
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Count to three."}],
        max_tokens=6,
        extra_body={"min_tokens": 6},
        temperature=0,
        extra_headers={"Cache-Control": "no-cache"},  # through the worker, not the answer cache
    )
    generated = completion.usage.completion_tokens
    assert generated == 6
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    def worker_published() -> dict | None:
        after = _scrape(live_api.url)

        def moved(name: str, by: float) -> bool:
            return _value(after, name, **mine) >= _value(before, name, **mine) + by

        # An earlier test's generation may finish after `before` and move the token counter on its
        # own, and the published snapshot can be a heartbeat old: wait until it also holds our
        # request's latencies (every gap of its tokens), or fail with the message below.
        ours = (
            moved("vllm:generation_tokens_total", generated)
            and moved("vllm:inter_token_latency_seconds_count", generated - 1)
            and moved("vllm:e2e_request_latency_seconds_count", 1)
        )
        return after if ours else None

    # The worker publishes its counters with its heartbeat (every second under scripts/test.sh).
    after = wait_for(worker_published, timeout=20, interval=0.5, message="worker counters in /metrics")

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("docplatform_http_responses_total", method="POST", route=chat, status="200") == 1
    assert delta("docplatform_http_responses_total", method="POST", route=chat, status="404") == 1
    assert delta("docplatform_http_request_duration_seconds_count", method="POST", route=chat) == 2
    # The suite's worker may still be finishing an earlier test's generation: at least ours.
    assert delta("vllm:prompt_tokens_total", **mine) >= completion.usage.prompt_tokens
    assert delta("vllm:prefix_cache_queries_total", **mine) >= completion.usage.prompt_tokens
    assert (
        delta("vllm:prefix_cache_hits_total", **mine) >= completion.usage.prompt_tokens_details.cached_tokens
    )
    assert delta("vllm:request_success_total", **mine, finished_reason="length") >= 1
    assert delta("vllm:time_to_first_token_seconds_count", **mine) >= 1
    assert delta("vllm:e2e_request_latency_seconds_count", **mine) >= 1
    assert delta("vllm:inter_token_latency_seconds_count", **mine) >= generated - 1
    assert _value(after, "vllm:inter_token_latency_seconds_bucket", **mine, le="+Inf") == _value(
        after, "vllm:inter_token_latency_seconds_count", **mine
    )
    assert _value(after, "process_resident_memory_bytes") > 0


def test_open_streams_gauge_follows_a_stream(live_api, ready_worker, make_api_user):
    _, key = make_api_user()
    client = openai.OpenAI(base_url=f"{live_api.url}/v1", api_key=key, max_retries=0, timeout=120)
    chat = "v1/chat/completions"
    # Long enough to be still open when scraped (a short answer may be sent whole by then).
    stream = client.chat.completions.create(
        model="qwen3-vl-2b",
        messages=[{"role": "user", "content": "Tell a story."}],
        max_tokens=4000,
        extra_body={"min_tokens": 4000},
        stream=True,
        extra_headers={"Cache-Control": "no-cache"},
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    assert _value(_scrape(live_api.url), "docplatform_http_open_streams", route=chat) == 1
    stream.close()  # the client goes away: the server closes the stream
    wait_for(
        lambda: _value(_scrape(live_api.url), "docplatform_http_open_streams", route=chat) == 0,
        timeout=30,
        message="the stream counted as closed",
    )
