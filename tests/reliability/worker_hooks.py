"""Test-only knobs, loaded into a worker we start with `--include tests.reliability.worker_hooks`
(never by the platform itself): they wrap every job runner so a fault test can

- hold a job in the middle of its run (`RELIABILITY_HOLD_BEFORE_S` before the model runs,
  `RELIABILITY_HOLD_AFTER_S` after it produced its result but before the row is written), long
  enough to `kill -9` or SIGTERM the worker at that point;
- make a job poison: a vqa job whose question is `POISON_QUESTION` ends the worker process
  (`os._exit`) each time it runs, like a native crash in a decoder would;
- hold a /v1 chat generation after its "started" event (`RELIABILITY_CHAT_HOLD_S`), so the test
  can kill the worker that is visibly running it.

The env variables are set only on the worker that should be slow; a second worker started without
them runs the same jobs at normal speed.
"""

from __future__ import annotations

import logging
import os
import time

from tests.reliability.stack import POISON_EXIT_CODE, POISON_QUESTION
from vision import inference
from vision.runners import loop, types

logger = logging.getLogger(__name__)

CHAT_HOLD_S = float(os.environ.get("RELIABILITY_CHAT_HOLD_S") or 0)
HOLD_BEFORE_S = float(os.environ.get("RELIABILITY_HOLD_BEFORE_S") or 0)
HOLD_AFTER_S = float(os.environ.get("RELIABILITY_HOLD_AFTER_S") or 0)


def _hold(seconds: float) -> None:
    if seconds > 0:
        time.sleep(min(seconds, 120))  # bounded whatever the env says


def _wrap(runner):
    def run(context: types.JobRunContext) -> types.JobOutcome:
        if (context.job.options or {}).get("question") == POISON_QUESTION:
            logger.error("job %s: poison job, the worker exits now", context.job.pk)
            os._exit(POISON_EXIT_CODE)
        logger.info("job %s: holding %.1f s before the run", context.job.pk, HOLD_BEFORE_S)
        _hold(HOLD_BEFORE_S)
        outcome = runner(context)
        logger.info("job %s: holding %.1f s after the run", context.job.pk, HOLD_AFTER_S)
        _hold(HOLD_AFTER_S)
        return outcome

    run.reliability_wrapped = True
    return run


for _task, _runner in list(loop.JOB_RUNNERS.items()):
    if not getattr(_runner, "reliability_wrapped", False):
        loop.JOB_RUNNERS[_task] = _wrap(_runner)


_spec_to_engine_request = inference.spec_to_engine_request


def _held_spec_to_engine_request(spec):
    # generate_to_stream calls this right after publishing "started".
    _hold(CHAT_HOLD_S)
    return _spec_to_engine_request(spec)


if CHAT_HOLD_S:
    inference.spec_to_engine_request = _held_spec_to_engine_request
