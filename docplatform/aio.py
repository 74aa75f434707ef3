"""Sync work (ORM, cache, file checks) from async views without a thread per request.

`pooled_sync_to_async(fn)` runs `fn` in one bounded pool shared by every request of the process
(`WEB_SYNC_THREADS`), not in the request's own thread as `sync_to_async`'s thread-sensitive default
does, and closes the thread's database connections afterwards the way Django does at the end of a
request (`close_old_connections`: kept for DATABASE_CONN_MAX_AGE, else closed). So 256 open /v1
streams cost no more threads, or database connections, than this pool has.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.conf import settings
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=settings.WEB_SYNC_THREADS, thread_name_prefix="docplatform-sync"
        )
    return _executor


def pooled_sync_to_async(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    def closing(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if getattr(AsyncToSync.executors, "current", None) is not None:
            # Called from sync code through async_to_sync (Django's test client, a management
            # command): back to that thread, as sync_to_async does by default, so the work shares
            # its connection and open transaction, which are the caller's to close.
            return await sync_to_async(fn)(*args, **kwargs)
        return await sync_to_async(closing, thread_sensitive=False, executor=_pool())(*args, **kwargs)

    return call
