"""Celery tasks of the vision app. Thin: take ids, call a service, return a small TypedDict."""

from typing import Any, TypedDict

from celery import shared_task


class PingResult(TypedDict):
    pong: bool
    hostname: str  # the worker that answered
    engine: dict[str, Any]  # that worker's engine status


@shared_task(bind=True, name="vision.ping")
def ping(self) -> PingResult:
    """Round trip through the broker and a worker; used by tests and operators."""
    from vision.worker import engine_status

    return PingResult(pong=True, hostname=self.request.hostname or "", engine=engine_status())
