"""The stuck-job watchdog: a thread in every worker process that requeues or fails jobs whose
worker died (`vision.runners.recovery.jobs_recover_stuck`), and re-sends queued jobs whose
message a Redis crash lost (`jobs_resend_lost`).

On start it first recovers this worker's own leftovers (jobs still "running" under its hostname
from before a crash or kill), then checks every JOB_STUCK_GRACE_SECONDS / 2. Several workers
running it at once is fine: each recovery is a conditional update that only one of them wins.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import signals
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


class _Watchdog(threading.Thread):
    def __init__(self, hostname: str) -> None:
        super().__init__(name="docplatform-job-watchdog", daemon=True)
        self.hostname = hostname
        self._stop_event = threading.Event()

    def run(self) -> None:
        from vision.runners.recovery import jobs_recover_stuck, jobs_resend_lost

        restarted: str | None = self.hostname
        while not self._stop_event.is_set():
            try:
                recovered = jobs_recover_stuck(restarted_worker=restarted)
                if recovered:
                    logger.warning("watchdog recovered %d stuck job(s)", recovered)
                restarted = None
                jobs_resend_lost()
            except Exception as exc:  # DB or Redis blip: try again next round
                logger.warning("stuck-job check failed: %s", exc)
            finally:
                close_old_connections()
            self._stop_event.wait(max(settings.JOB_STUCK_GRACE_SECONDS / 2, 1))

    def stop(self) -> None:
        self._stop_event.set()


_watchdog: _Watchdog | None = None


def on_worker_ready(sender: Any, **_: Any) -> None:
    global _watchdog
    _watchdog = _Watchdog(sender.hostname)
    _watchdog.start()


def on_worker_shutdown(**_: Any) -> None:
    if _watchdog is not None:
        _watchdog.stop()


def connect_signals() -> None:
    signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="docplatform-job-watchdog")
    signals.worker_shutdown.connect(
        on_worker_shutdown, weak=False, dispatch_uid="docplatform-job-watchdog-stop"
    )
