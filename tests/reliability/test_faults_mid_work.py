"""Faults in the middle of work: ≥ 100 caption jobs accepted through /api/jobs and, while they
run, one worker killed with SIGKILL (and started again), Redis killed with SIGKILL and started
again on the same append-only data 4 s later, and on PostgreSQL the database restarted. Every
accepted job must end `succeeded` with its result stored once; the attempts histogram is printed.

Real Redis with the production config (AOF), two real vision workers on the tiny checkpoint, a
real uvicorn, loopback only; every wait is bounded (the whole test takes about 1–3 minutes).
"""

from __future__ import annotations

import collections
import signal
import threading
import time

import httpx
import pytest
from django.db import InterfaceError, OperationalError, connection

from tests.reliability.conftest import http
from tests.reliability.stack import PostgresCluster, RedisServer, logged_successes, wait_until
from tests.vision import files

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

JOBS = 100
MAX_TOKENS = 8
SUBMITTERS = 4
FINISHED = {"succeeded", "failed", "cancelled"}
WEB_ENV = {"THROTTLE_ANON_RATE": "off", "THROTTLE_USER_RATE": "off"}


def _db(query):
    """Run a read on the test database, riding out the PostgreSQL restart the test causes."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return query()
        except (OperationalError, InterfaceError):
            if time.monotonic() > deadline:
                raise
            connection.close()
            time.sleep(0.5)


def _statuses(ids: list[int]) -> collections.Counter:
    from vision.models import Job

    return _db(lambda: collections.Counter(Job.objects.filter(pk__in=ids).values_list("status", flat=True)))


def _in_flight(ids: list[int], worker: str | None = None) -> dict | None:
    """The status counts of `ids` when one of them is queued or running (running on `worker`,
    when given), else None."""
    from vision.models import Job

    statuses = dict(_statuses(ids))
    if worker is not None:
        running_there = _db(lambda: Job.objects.filter(pk__in=ids, status="running", worker=worker).exists())
        return statuses if running_there else None
    return statuses if statuses.get("queued", 0) + statuses.get("running", 0) else None


class Submitter:
    """`count` caption uploads through POST /api/jobs from a few threads; a 503 (Redis or the
    database down for a moment) is retried, so every job counted here was accepted (202)."""

    def __init__(self, base_url: str, key: str, count: int) -> None:
        self.base_url, self.key, self.count = base_url, key, count
        self.accepted: list[int] = []
        self.refused = collections.Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(SUBMITTERS)]

    def start(self) -> Submitter:
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        assert not any(t.is_alive() for t in self._threads), "submitters did not finish"

    def _claim_slot(self) -> bool:
        with self._lock:
            if self.count <= 0:
                return False
            self.count -= 1
            return True

    def _run(self) -> None:
        png = files.image_bytes("PNG", (96, 64), "red")
        data = {"task": "caption", "max_tokens": str(MAX_TOKENS)}
        with http(self.base_url, self.key, timeout=30) as client:
            while self._claim_slot():
                for _ in range(200):
                    try:
                        response = client.post(
                            "/api/jobs", data=data, files={"file": ("page.png", png, "image/png")}
                        )
                    except httpx.HTTPError as exc:  # a connection refused is never an accepted job
                        self.refused[type(exc).__name__] += 1
                        time.sleep(0.3)
                        continue
                    if response.status_code == 202:
                        with self._lock:
                            self.accepted.append(response.json()["id"])
                        break
                    self.refused[response.status_code] += 1
                    if response.status_code != 503:
                        self.errors.append(f"{response.status_code}: {response.text[:300]}")
                        return
                    time.sleep(0.3)


def test_faults_while_100_jobs_run_every_accepted_job_succeeds_once(
    stack_redis: RedisServer, start_worker, start_web, api_key
):
    """GIVEN two workers and ≥ 100 caption jobs being accepted WHEN, while they run, worker A is
    SIGKILLed (and started again), Redis is SIGKILLed and started again on its AOF 4 s later and,
    on PostgreSQL, the database is restarted THEN every accepted job ends `succeeded`, its result
    written once (one "succeeded" line over all worker logs, completion tokens stored), and the
    faults hit jobs that were queued or running at that moment."""
    from vision.models import Job

    started = time.monotonic()
    cluster = PostgresCluster.from_env()
    workers = [start_worker(name=f"rel-a-{time.monotonic_ns()}@faults"), start_worker()]
    web = start_web(env=WEB_ENV)
    for worker in workers:
        worker.wait_ready(timeout=180)
    _, key = api_key()
    faults: dict[str, dict] = {}

    submitter = Submitter(web.url, key, JOBS).start()
    # Let work get going: some jobs done, others running or queued behind them.
    wait_until(
        lambda: _statuses(list(submitter.accepted))["succeeded"] >= 10,
        timeout=120,
        interval=0.2,
        what="10 jobs to succeed",
    )

    # 1. SIGKILL worker A mid-work, start it again under the same name (its watchdog takes back
    #    its leftovers at start; worker B's does after the heartbeat TTL + grace).
    #    The tiny model finishes a job in well under a second, so the moment is chosen: a job
    #    running on worker A (polled every 20 ms; the snapshot is the one that saw it).
    victim = workers[0]
    faults["kill -9 worker"] = wait_until(
        lambda: _in_flight(list(submitter.accepted), worker=victim.name),
        timeout=60,
        interval=0.02,
        what="a job running on worker A",
    )
    victim.kill(signal.SIGKILL)
    assert victim.wait_exit(timeout=10) == -signal.SIGKILL
    restarted = start_worker(name=victim.name)

    # 2. kill -9 Redis while worker B publishes tokens; start it again on the same data 4 s later.
    time.sleep(1.0)
    faults["kill -9 Redis"] = wait_until(
        lambda: _in_flight(list(submitter.accepted)),
        timeout=60,
        interval=0.02,
        what="a queued or running job",
    )
    stack_redis.stop(signal.SIGKILL)
    time.sleep(4.0)
    stack_redis.start()

    # 3. PostgreSQL restarted while jobs run (when the suite runs on the private cluster).
    if cluster is not None:
        wait_until(
            lambda: _statuses(list(submitter.accepted))["running"] >= 1, timeout=60, what="a running job"
        )
        faults["PostgreSQL restart"] = dict(_statuses(list(submitter.accepted)))
        faults["PostgreSQL restart"]["took_s"] = round(cluster.restart(), 1)
        connection.close()  # this process's connection was cut too

    submitter.join(timeout=120)
    assert not submitter.errors, submitter.errors
    accepted = sorted(submitter.accepted)
    assert len(accepted) >= JOBS
    wait_until(
        lambda: sum(n for s, n in _statuses(accepted).items() if s in FINISHED) == len(accepted),
        timeout=180,
        interval=0.5,
        what=f"all {len(accepted)} accepted jobs to finish",
    )
    elapsed = time.monotonic() - started

    rows = _db(
        lambda: list(
            Job.objects.filter(pk__in=accepted).values(
                "pk", "status", "attempts", "retries", "error_code", "completion_tokens", "worker"
            )
        )
    )
    histogram = collections.Counter(row["attempts"] for row in rows)
    retries = collections.Counter(row["retries"] for row in rows)
    stored = logged_successes([*workers, restarted], accepted)
    print(
        f"\n[faults] {len(accepted)} jobs accepted ({dict(submitter.refused)} refused on the way), "
        f"all finished {elapsed:.0f} s after the stack started; database {connection.vendor}"
    )
    for fault, seen in faults.items():
        print(f"[faults]   at {fault}: {seen}")
    print(f"[faults] attempts histogram: {dict(sorted(histogram.items()))}")
    print(f"[faults] service retries histogram: {dict(sorted(retries.items()))}")

    not_succeeded = [row for row in rows if row["status"] != "succeeded"]
    assert not not_succeeded, not_succeeded
    assert all(row["completion_tokens"] >= 1 for row in rows)
    assert all(stored[pk] == 1 for pk in accepted), {pk: stored[pk] for pk in accepted if stored[pk] != 1}
    # The faults hit work in flight, not an idle stack.
    assert faults["kill -9 worker"].get("running", 0) + faults["kill -9 worker"].get("queued", 0) >= 1
    assert faults["kill -9 Redis"].get("running", 0) + faults["kill -9 Redis"].get("queued", 0) >= 1
    assert restarted.process.poll() is None  # the restarted worker is up
