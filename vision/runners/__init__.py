"""Job execution, the worker side of a job: what runs when `vision.job_run` runs.

- `loop`: claim the job row, run its task's runner, store the outcome if the claim still holds,
  or give the claim back when the engine cannot take it (`job_run`, called by `vision.tasks`).
- `recovery`: jobs whose worker died are requeued or failed (the watchdog thread in every worker,
  and `GET /api/jobs/{id}`); `watchdog` is that thread.
- one module per task family, each a runner `JobRunContext -> JobOutcome`: `generation`
  (caption, vqa, chat), `ocr`, `invoice`, `extract` (document types).

The user-facing side (submit, cancel, list) is `vision.services.jobs`. Nothing here imports the
engine at module level: the web process imports `recovery`.
"""
