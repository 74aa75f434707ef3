"""The Job status machine: which moves are allowed, and the one function that makes a move.

    queued  ──claim──►  running  ──outcome──►  succeeded | failed | cancelled
       ▲                 │   ▲
       └──release/requeue┘   └── re-attempt or take-over (a new claim on the same row)
    queued ──► failed (queue down, attempts used up, no engine)   queued|running ──► cancelled (user)

A finished job never moves again. Every move is one conditional UPDATE: the rows are narrowed to
the move's source status and to whatever else the caller's condition is (the claim's
`request_id`, the attempt count as read), so two workers, a cancel and a recovery racing for one
row change it once; the count of rows changed tells the caller whether its move won.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from vision.models import Job, JobStatus

MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

UNFINISHED: tuple[JobStatus, ...] = tuple(status for status, targets in MOVES.items() if targets)


class JobMoveRefused(ValueError):
    """A move the status machine does not allow (a bug in the caller, never a race)."""


def job_move_check(sources: JobStatus | Iterable[JobStatus], target: JobStatus) -> tuple[JobStatus, ...]:
    """The source statuses, each checked to allow a move to `target`; raises JobMoveRefused."""
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    for source in sources:
        if JobStatus(target) not in MOVES[JobStatus(source)]:
            raise JobMoveRefused(f"a job cannot move from {source} to {target}")
    return sources


def job_rows(sources: JobStatus | Iterable[JobStatus], **match: Any) -> QuerySet[Job]:
    """The Job rows in one of `sources` that match `match` (pk, request_id, attempts, ...)."""
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    if len(sources) == 1:
        return Job.objects.filter(status=sources[0], **match)
    return Job.objects.filter(status__in=sources, **match)


def job_move(
    *,
    source: JobStatus | Iterable[JobStatus],
    target: JobStatus,
    where: dict[str, Any] | None = None,
    rows: QuerySet[Job] | None = None,
    **fields: Any,
) -> int:
    """Move the jobs in status `source` that match `where` to `target`, writing `fields` in the
    same UPDATE. `rows` instead of `where`: rows the caller has narrowed itself, to `source`
    included (a worker's claim, `vision.runners.claims.claim_holds`). Returns the number of rows
    moved: 0 when the condition no longer holds (someone else moved the row first). Raises
    JobMoveRefused for a forbidden move before touching the database."""
    sources = job_move_check(source, target)
    if rows is None:
        rows = job_rows(sources, **(where or {}))
    return rows.update(status=target, **fields)
