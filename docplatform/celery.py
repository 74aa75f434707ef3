"""The one Celery app. Configuration lives in Django settings under the CELERY_ namespace.

`celery -A docplatform worker` with no flags starts a working vision worker: the settings give it
the threads pool (`CELERY_WORKER_POOL`), `WORKER_CONCURRENCY` threads and the `vision` queue (the
default queue; the worker adds its own sticky queue at start-up, see vision/worker.py). Flags
still override them (`-c 8`, `-Q vision`, `-n vision@%h`), except the pool: one process must hold
one engine, so any pool but threads (prefork, solo, eventlet, gevent) makes the worker exit with
code 2 before it starts.
"""

import os
import sys
from collections.abc import Sequence
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docplatform.settings")

app = Celery("docplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The only pool in which one process runs every task, so one engine (one model copy) feeds its
# batching scheduler from several task threads.
USABLE_POOL = "threads"
UNUSABLE_POOL_EXIT_CODE = 2


def pool_from_argv(argv: Sequence[str]) -> str | None:
    """The pool named with -P/--pool on the command line, if any.

    Needed because Celery replaces an explicit `-P prefork` (its command-line default) with the
    configured `worker_pool`, so the resolved pool class cannot tell it from no flag at all."""
    for index, arg in enumerate(argv):
        if arg in ("-P", "--pool") and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg.startswith("-P") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
    return None


def _pool_name(pool_cls: Any) -> str:
    module = getattr(pool_cls, "__module__", "") or ""
    return {"celery.concurrency.thread": "threads"}.get(module, getattr(pool_cls, "__name__", str(pool_cls)))


@signals.celeryd_init.connect
def _refuse_unusable_pool(sender: str, options: dict[str, Any], **_: Any) -> None:
    """Exit before the worker starts when its pool is not threads. SystemExit is not an Exception,
    so Celery's signal dispatch lets it through and the command ends with this code."""
    requested = pool_from_argv(sys.argv)
    # The command passes the pool class it resolved as `pool` (`pool_cls` when built in code).
    resolved = _pool_name(options.get("pool") or options.get("pool_cls"))
    if requested not in (None, USABLE_POOL) or resolved != USABLE_POOL:
        print(
            f"docplatform: the vision worker must run with the threads pool (one engine per process), "
            f"got -P {requested or resolved}; drop -P or use -P threads",
            file=sys.stderr,
        )
        raise SystemExit(UNUSABLE_POOL_EXIT_CODE)
