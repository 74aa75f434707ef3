"""Faults on a private stack (own Redis with the production config, real workers, real uvicorn):
a worker killed mid-job, a worker stopped gracefully, Redis restarted under load, a poison job, a
chat whose worker died. Every wait is bounded; the figures each test saw go to the log (-s) and
docs/reliability.md.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.reliability.conftest import http
from tests.reliability.stack import POISON_EXIT_CODE, POISON_QUESTION, logged_successes, wait_until
from tests.vision import files

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

FINISHED = {"succeeded", "failed", "cancelled"}


def submit(client: httpx.Client, *, task: str = "caption", question: str = "", max_tokens: int = 8) -> dict:
    data = {"task": task, "max_tokens": str(max_tokens)}
    if question:
        data["question"] = question
    png = files.image_bytes("PNG", (96, 64), "red")
    response = client.post("/api/jobs", data=data, files={"file": ("page.png", png, "image/png")})
    assert response.status_code == 202, response.text
    return response.json()


def job_status(client: httpx.Client, job_id: int) -> dict:
    response = client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_job(client: httpx.Client, job_id: int, statuses: set[str], *, timeout: float) -> dict:
    seen: dict = {}

    def reached() -> bool:
        seen.update(job_status(client, job_id))
        return seen["status"] in statuses

    try:
        wait_until(reached, timeout=timeout, interval=0.3, what=f"job {job_id} in {statuses}")
    except TimeoutError:
        pytest.fail(f"job {job_id} never reached {statuses} in {timeout} s: {seen}")
    return seen


def job_row(job_id: int):
    from vision.models import Job

    return Job.objects.get(pk=job_id)


def test_kill_9_mid_job_finishes_once_on_a_second_worker(stack_redis, start_worker, start_web, api_key):
    """GIVEN a worker holding a caption job mid-run WHEN it is killed with SIGKILL THEN the job is
    noticed (heartbeat gone), requeued and finished by a second worker: one job row, one document,
    attempts == 2, the result stored once."""
    from vision.models import Document, Job

    slow = start_worker(env={"RELIABILITY_HOLD_BEFORE_S": "60"})
    web = start_web()
    slow.wait_ready()
    user, key = api_key()
    with http(web.url, key) as client:
        job = submit(client)
        running = wait_job(client, job["id"], {"running"}, timeout=30)
        assert running["attempts"] == 1 and job_row(job["id"]).worker == slow.name

        killed_at = time.monotonic()
        slow.kill(signal.SIGKILL)
        assert slow.wait_exit(timeout=10) == -signal.SIGKILL
        second = start_worker()
        second.wait_ready()
        done = wait_job(client, job["id"], FINISHED, timeout=60)
        recovered_s = time.monotonic() - killed_at

    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    row = job_row(job["id"])
    assert row.worker == second.name and row.completion_tokens >= 1
    assert Job.objects.filter(owner=user).count() == 1
    assert Document.objects.filter(owner=user).count() == 1
    assert logged_successes([second], [job["id"]])[job["id"]] == 1
    print(f"\n[faults] kill -9 mid-job: finished on the second worker {recovered_s:.1f} s after the kill")


def test_kill_9_after_the_result_before_it_is_stored_gives_one_extraction(
    stack_redis, start_worker, start_web, api_key
):
    """GIVEN an invoice job whose worker computed the extraction but has not stored the job's
    outcome WHEN the worker is killed and restarted under the same name THEN its leftover is
    recovered at start, the job runs again and finishes once, and the extraction is updated in
    place (one row, a "reextracted" audit event), not duplicated."""
    from vision.models import Extraction

    name = "rel-restarted@reliability"
    slow = start_worker(env={"RELIABILITY_HOLD_AFTER_S": "60"}, name=name)
    web = start_web()
    slow.wait_ready()
    _, key = api_key()
    with http(web.url, key) as client:
        job = submit(client, task="invoice")
        wait_until(
            lambda: f"job {job['id']}: holding" in slow.log() and "after the run" in slow.log(),
            timeout=90,
            what="the invoice runner to finish its extraction",
        )
        assert Extraction.objects.filter(job_id=job["id"]).count() == 1
        slow.kill(signal.SIGKILL)
        slow.wait_exit(timeout=10)
        restarted = start_worker(name=name)
        restarted.wait_ready()
        done = wait_job(client, job["id"], FINISHED, timeout=90)

    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    extractions = Extraction.objects.filter(job_id=job["id"])
    assert extractions.count() == 1
    actions = list(extractions.get().events.order_by("id").values_list("action", flat=True))
    assert actions[:2] == ["created", "reextracted"], actions


def test_sigterm_finishes_running_jobs_and_leaves_the_rest_queued(
    stack_redis, start_worker, start_web, api_key
):
    """GIVEN a worker (2 threads) running 2 jobs with a third queued WHEN it gets SIGTERM THEN it
    finishes the running two before it exits (exit 0, attempts 1) and the third, never started,
    is run by the next worker: nothing lost, nothing run twice."""
    first = start_worker(env={"RELIABILITY_HOLD_BEFORE_S": "4"})
    web = start_web()
    first.wait_ready()
    _, key = api_key()
    with http(web.url, key) as client:
        jobs = [submit(client) for _ in range(3)]
        wait_until(
            lambda: sum(job_status(client, j["id"])["status"] == "running" for j in jobs) == 2,
            timeout=30,
            what="two running jobs",
        )
        stopped_at = time.monotonic()
        first.kill(signal.SIGTERM)
        assert first.wait_exit(timeout=60) == 0
        stop_s = time.monotonic() - stopped_at
        states = {j["id"]: job_status(client, j["id"]) for j in jobs}
        finished_by_first = [s for s in states.values() if s["status"] == "succeeded"]
        assert len(finished_by_first) == 2, states
        assert [s["status"] for s in states.values()].count("queued") == 1, states
        second = start_worker()
        second.wait_ready()
        done = [wait_job(client, j["id"], FINISHED, timeout=60) for j in jobs]

    assert all(d["status"] == "succeeded" and d["attempts"] == 1 for d in done), done
    assert sorted(job_row(j["id"]).worker for j in jobs) == sorted([first.name] * 2 + [second.name])
    print(f"\n[faults] SIGTERM: worker finished 2 running jobs and exited in {stop_s:.1f} s")


def test_redis_restart_503_while_down_then_every_accepted_job_finishes(
    stack_redis, start_worker, start_web, api_key
):
    """GIVEN jobs queued and running WHEN Redis stops (SIGTERM: AOF written) THEN the API answers
    503 with a clear error within seconds (never hangs) and /healthz stays 200; WHEN Redis is back
    on the same data THEN every accepted job finishes."""
    from vision.models import Job

    worker = start_worker(env={"RELIABILITY_HOLD_BEFORE_S": "3"})
    web = start_web()
    worker.wait_ready()
    user, key = api_key()
    with http(web.url, key, timeout=20) as client:
        jobs = [submit(client, max_tokens=16) for _ in range(5)]
        wait_until(
            lambda: any(job_status(client, j["id"])["status"] == "running" for j in jobs),
            timeout=30,
            what="a running job",
        )
        stack_redis.stop(signal.SIGTERM)
        outage: dict[str, tuple[int, float, dict]] = {}
        png = files.image_bytes("PNG", (32, 32), "blue")
        calls = {
            "POST /api/jobs": lambda: client.post(
                "/api/jobs", data={"task": "caption"}, files={"file": ("x.png", png, "image/png")}
            ),
            "GET /api/jobs/{id}": lambda: client.get(f"/api/jobs/{jobs[0]['id']}"),
            "POST /v1/chat/completions": lambda: client.post(
                "/v1/chat/completions",
                json={
                    "model": "qwen3-vl-2b",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 2,
                },
            ),
            "GET /healthz": lambda: client.get("/healthz"),
        }
        for label, call in calls.items():
            started = time.monotonic()
            response = call()
            outage[label] = (response.status_code, time.monotonic() - started, response.json())
        jobs_during_outage = Job.objects.filter(owner=user).count()
        time.sleep(2)
        stack_redis.start()
        done = [wait_job(client, j["id"], FINISHED, timeout=120) for j in jobs]

    print("\n[faults] Redis down:", {k: (v[0], round(v[1], 2)) for k, v in outage.items()})
    assert outage["GET /healthz"][0] == 200
    for label in ("POST /api/jobs", "GET /api/jobs/{id}"):
        status, elapsed, body = outage[label]
        assert status == 503 and body["code"] in {"queue_unavailable", "service_unavailable"}, (label, body)
        assert elapsed < 10, (label, elapsed)
    status, elapsed, body = outage["POST /v1/chat/completions"]
    assert status == 503 and body["error"]["code"] == "queue_unavailable" and elapsed < 10, body
    assert jobs_during_outage == len(jobs)  # the refused upload created no job
    assert [d["status"] for d in done] == ["succeeded"] * len(jobs), done


def test_poison_job_is_tried_a_bounded_number_of_times_then_failed(
    stack_redis, start_worker, start_web, api_key
):
    """GIVEN a job that kills every worker that runs it WHEN it is submitted to two workers with
    JOB_MAX_ATTEMPTS=2 THEN each run kills one worker, and the worker started next (what the
    supervisor does: compose restarts workers) fails the job with `worker_lost` and a readable
    reason instead of running it a third time. Reading the job never writes, so with every worker
    dead the job stays `running` until one is back."""
    env = {"JOB_MAX_ATTEMPTS": "2"}
    workers = [start_worker(env=env), start_worker(env=env)]
    web = start_web(env=env)
    for worker in workers:
        worker.wait_ready()
    _, key = api_key()
    with http(web.url, key) as client:
        job = submit(client, task="vqa", question=POISON_QUESTION)
        codes = [worker.wait_exit(timeout=60) for worker in workers]
        assert job_status(client, job["id"])["status"] == "running"  # nobody left to recover it
        restarted = start_worker(env=env)
        restarted.wait_ready()
        done = wait_job(client, job["id"], FINISHED, timeout=60)

    assert codes == [POISON_EXIT_CODE, POISON_EXIT_CODE]
    assert restarted.process.poll() is None  # it failed the job instead of running it
    assert done["status"] == "failed" and done["attempts"] == 2, done
    assert done["error"]["code"] == "worker_lost"
    assert "lost 2 times" in done["error"]["message"] or "2 times" in done["error"]["message"]


def _chat(client: httpx.Client, messages: list[dict], **extra) -> httpx.Response:
    body = {"model": "qwen3-vl-2b", "messages": messages, "max_tokens": 4, "temperature": 0.7, **extra}
    return client.post("/v1/chat/completions", json=body, headers={"X-Conversation-Id": "rel-sticky"})


def test_sticky_request_to_a_dead_workers_queue_is_redispatched(
    stack_redis, start_worker, start_web, api_key
):
    """GIVEN a conversation stuck to worker A WHEN A is killed and the next turn is routed to A's
    own queue (its heartbeat has not expired yet) THEN after STICKY_START_TIMEOUT_SECONDS without a
    "started" event the request is sent to the shared queue and worker B answers it, instead of
    the client waiting for the request timeout."""
    workers = {w.name: w for w in (start_worker(), start_worker())}
    web = start_web()
    for worker in workers.values():
        worker.wait_ready()
    _, key = api_key()
    messages = [{"role": "user", "content": "Say something."}]
    with http(web.url, key, timeout=60) as client:
        first = _chat(client, messages)
        assert first.status_code == 200, first.text
        served_by = first.headers["X-DocPlatform-Worker"]
        workers[served_by].kill(signal.SIGKILL)
        messages += [first.json()["choices"][0]["message"], {"role": "user", "content": "And more?"}]
        started = time.monotonic()
        second = _chat(client, messages)
        elapsed = time.monotonic() - started

    assert second.status_code == 200, second.text
    assert second.headers["X-DocPlatform-Queue"] == f"vision.w.{served_by}"  # routed to the dead one
    assert second.headers["X-DocPlatform-Worker"] != served_by
    assert elapsed < 30  # STICKY_START_TIMEOUT_SECONDS=3 in the stack, not the 60 s request timeout
    print(f"\n[faults] sticky turn to a killed worker's queue answered by another in {elapsed:.1f} s")


def test_chat_whose_worker_dies_mid_generation_is_503_worker_lost(
    stack_redis, start_worker, start_web, api_key
):
    """GIVEN a /v1 chat started on a worker WHEN the worker is killed THEN the client gets 503
    `worker_lost` with Retry-After once the heartbeat expires, not a hang until the request
    timeout; the request is cancelled so a redelivered message does not run it for nobody."""
    from vision import streams

    worker = start_worker(env={"RELIABILITY_CHAT_HOLD_S": "60"})
    web = start_web()
    worker.wait_ready()
    _, key = api_key()
    result: dict = {}
    with http(web.url, key, timeout=60) as client:

        def call() -> None:
            started = time.monotonic()
            result["response"] = _chat(client, [{"role": "user", "content": "hello"}])
            result["elapsed"] = time.monotonic() - started

        thread = threading.Thread(target=call)
        thread.start()
        wait_until(lambda: _started(stack_redis), timeout=30, what="the chat to start")
        worker.kill(signal.SIGKILL)
        thread.join(timeout=45)
        assert not thread.is_alive()

    response = result["response"]
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "worker_lost"
    assert int(response.headers["Retry-After"]) >= 1
    assert result["elapsed"] < 30
    request_id = response.headers.get("X-Request-Id") or _last_request_id(stack_redis)
    assert streams.cancel_requested(stack_redis.client(), request_id)
    print(f"\n[faults] chat whose worker was killed: 503 worker_lost after {result['elapsed']:.1f} s")


def _started(server) -> bool:
    client = server.client()
    for key in client.scan_iter(match="docplatform:gen:*:events", count=100):
        if any(fields.get(b"type") == b"started" for _id, fields in client.xrange(key)):
            return True
    return False


def _last_request_id(server) -> str:
    keys = list(server.client().scan_iter(match="docplatform:gen:*:events", count=100))
    assert len(keys) == 1, keys
    return keys[0].decode().split(":")[2]


def test_v1_answers_when_redis_dies_mid_answer_end_with_a_503_not_a_hang(
    stack_redis, start_worker, start_web, api_key
):
    """GIVEN a streamed and a non-streamed /v1 chat, both started on the worker WHEN Redis is
    killed with SIGKILL mid-answer (and stays down) THEN the stream ends with one OpenAI error
    event of a 503 class (`stream_unavailable`) and the non-stream request answers 503 with
    Retry-After, both within seconds, not at the request timeout."""
    import json

    worker = start_worker(env={"RELIABILITY_CHAT_HOLD_S": "60"})
    web = start_web()
    worker.wait_ready()
    _, key = api_key()
    result: dict = {}
    body = {"model": "qwen3-vl-2b", "max_tokens": 4, "temperature": 0.7}

    def streamed() -> None:
        with http(web.url, key, timeout=60) as client:
            request = {**body, "messages": [{"role": "user", "content": "stream"}], "stream": True}
            with client.stream("POST", "/v1/chat/completions", json=request) as response:
                result["stream_status"] = response.status_code
                result["events"] = [
                    line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")
                ]
                result["stream_end"] = time.monotonic()

    def waited() -> None:
        with http(web.url, key, timeout=60) as client:
            request = {**body, "messages": [{"role": "user", "content": "wait"}]}
            result["response"] = client.post("/v1/chat/completions", json=request)
            result["wait_end"] = time.monotonic()

    threads = [threading.Thread(target=streamed), threading.Thread(target=waited)]
    for thread in threads:
        thread.start()
    wait_until(lambda: _started_count(stack_redis) >= 2, timeout=30, what="both chats to start")
    killed_at = time.monotonic()
    stack_redis.stop(signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=45)
    assert not any(thread.is_alive() for thread in threads)

    assert result["stream_status"] == 200
    events = result["events"]
    error = json.loads(events[-1])["error"]
    assert error["code"] == "stream_unavailable" and error["type"] == "server_error", events
    assert "[DONE]" not in events
    response = result["response"]
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "queue_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    stream_s, wait_s = result["stream_end"] - killed_at, result["wait_end"] - killed_at
    assert stream_s < 20 and wait_s < 20, (stream_s, wait_s)
    print(
        f"\n[faults] Redis killed mid-answer: stream error event after {stream_s:.1f} s, 503 after {wait_s:.1f} s"
    )


def _started_count(server) -> int:
    client = server.client()
    count = 0
    for key in client.scan_iter(match="docplatform:gen:*:events", count=100):
        count += any(fields.get(b"type") == b"started" for _id, fields in client.xrange(key))
    return count
