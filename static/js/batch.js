// Batch page: polls GET /api/batches/<id> until every job has finished, updating the bar, the
// counts and each file's status and result snippet (textContent only).
"use strict";

(function () {
  const live = document.getElementById("batch-live");
  if (!live || live.dataset.finished) return;
  const i18n = document.getElementById("batch-i18n").dataset;
  const label = (status) => i18n["s" + status[0].toUpperCase() + status.slice(1)] || status;

  function width(part, n, total) {
    live.querySelector('.bar[data-part="' + part + '"]').style.width = (total ? (100 * n) / total : 0) + "%";
  }

  async function poll() {
    let batch;
    try {
      batch = await Portal.api(live.dataset.api);
    } catch (e) {
      setTimeout(poll, 3000);
      return;
    }
    const p = batch.progress;
    width("succeeded", p.succeeded, p.total);
    width("failed", p.failed + p.cancelled, p.total);
    width("running", p.running, p.total);
    document.getElementById("batch-summary").textContent = i18n.summary
      .replace("%(done)s", p.finished)
      .replace("%(total)s", p.total);
    document.getElementById("n-succeeded").textContent = p.succeeded;
    document.getElementById("n-failed").textContent = p.failed + p.cancelled;
    document.getElementById("n-running").textContent = p.running;
    document.getElementById("n-queued").textContent = p.queued;
    batch.jobs.forEach((job) => {
      const row = document.querySelector('tr[data-job="' + job.id + '"]');
      if (!row) return;
      const status = row.querySelector(".status");
      status.className = "status status-" + job.status;
      status.dataset.status = job.status;
      status.textContent = label(job.status);
      const snippet = row.querySelector(".snippet");
      if (job.result) snippet.textContent = job.result.text.slice(0, 120);
      else if (job.error) snippet.textContent = job.error.message.slice(0, 120);
    });
    if (batch.status !== "finished") setTimeout(poll, 1500);
  }
  setTimeout(poll, 500);
})();
