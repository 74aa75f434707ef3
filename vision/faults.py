"""Which failures fail a job and which only delay it.

The model or the input failing is the job's own failure: it ends `failed`. A service the worker
depends on being briefly unreachable — Redis (streams, heartbeats), the broker, the database, the
media store (a network folder or the S3 bucket) — is not: the operation is retried with backoff
and jitter, or the job runs again once the service is back (each run counted in `attempts`).

`is_transient(exc)` is the one place that tells the two apart; `db_retry` retries one database
operation on a fresh connection; `backoff_s` is the wait before try number n.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from botocore.exceptions import ClientError as S3ClientError
from botocore.exceptions import ConnectionError as S3ConnectionError
from botocore.exceptions import HTTPClientError as S3HTTPClientError
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# errno values of a network file system or disk that is briefly away (not a missing file, which is
# the input's fault).
_TRANSIENT_ERRNOS = {
    errno.EIO,
    errno.ETIMEDOUT,
    errno.ESTALE,
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EAGAIN,
    errno.EPIPE,
}


# S3 error codes of a bucket that is busy or restarting (the request may be sent again as it is).
_TRANSIENT_S3_CODES = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling"}


class ServiceUnavailable(Exception):
    """A service the job needs is unreachable now; the job is run again when it is back."""


def is_transient(exc: BaseException) -> bool:
    """Is `exc` (or what caused it) a service being briefly unreachable, not the job's fault?"""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (ServiceUnavailable, redis.ConnectionError, redis.TimeoutError, BrokerError)):
            return True
        if isinstance(exc, redis.BusyLoadingError):  # Redis replaying its AOF after a restart
            return True
        if isinstance(exc, (OperationalError, InterfaceError)):  # connection lost, server restarting
            return True
        if isinstance(exc, (ConnectionError, TimeoutError)):  # builtins: sockets
            return True
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
            return True
        # The media bucket (MEDIA_STORAGE=s3): endpoint unreachable, connection cut, read timeout.
        if isinstance(exc, (S3ConnectionError, S3HTTPClientError)):
            return True
        if isinstance(exc, S3ClientError) and _s3_busy(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _s3_busy(exc: S3ClientError) -> bool:
    """A 5xx or throttling answer from the bucket; a 403 or 404 is the request's own fault."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return error.get("Code") in _TRANSIENT_S3_CODES or status >= 500


def backoff_s(attempt: int, *, base: float = 0.5, cap: float = 10.0) -> float:
    """Full-jitter exponential backoff: a random wait in [base/2, min(cap, base * 2**attempt)]."""
    ceiling = min(cap, base * (2**attempt))
    return random.uniform(min(base / 2, ceiling), ceiling)


def db_retry(operation: Callable[[], T], *, what: str, budget_s: float = 120.0) -> T:
    """Run a database operation, retrying on a lost connection (PostgreSQL restarting, a network
    blip) with backoff for up to `budget_s`; each retry starts on a fresh connection. Anything
    else, and the last failure after the budget, is raised.

    Only for operations that are safe to repeat: conditional updates whose retry either applies
    once or finds the row already changed (the caller checks which)."""
    deadline = time.monotonic() + budget_s
    attempt = 0
    while True:
        try:
            return operation()
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or time.monotonic() > deadline:
                raise
            wait = backoff_s(attempt)
            logger.warning("%s: database unavailable (%s); retrying in %.1f s", what, exc, wait)
            attempt += 1
            reset_connection()
            time.sleep(wait)


def reset_connection() -> None:
    """Drop this thread's broken connection so the next query opens a new one."""
    with contextlib.suppress(Exception):  # closing a dead connection can fail too; it is gone either way
        connection.close()
    close_old_connections()
