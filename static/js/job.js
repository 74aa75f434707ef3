// Job page: draws the result's boxes over the page images; while the job is queued or running,
// polls its JSON status (GET /api/jobs/<id>) and reloads once it has finished.
"use strict";

(function () {
  const overlays = JSON.parse(document.getElementById("job-overlays").textContent);
  document.querySelectorAll("figure.pageimg").forEach((figure) => PortalBoxes.draw(figure, overlays));
  const toggle = document.getElementById("toggle-boxes");
  if (toggle) {
    toggle.addEventListener("change", () => {
      document.querySelectorAll("svg.boxes").forEach((svg) => (svg.style.display = toggle.checked ? "" : "none"));
    });
  }

  const live = document.getElementById("job-live");
  if (!live) return;
  const i18n = document.getElementById("job-i18n").dataset;
  const bar = document.getElementById("job-bar");
  const text = document.getElementById("job-progress-text");
  const statusBox = document.getElementById("job-status").querySelector(".status");
  const cancel = document.getElementById("job-cancel");
  const finished = ["succeeded", "failed", "cancelled"];

  async function poll() {
    let job;
    try {
      job = await Portal.api(live.dataset.api);
    } catch (e) {
      setTimeout(poll, 3000);
      return;
    }
    statusBox.dataset.status = job.status;
    statusBox.className = "status status-" + job.status;
    statusBox.textContent = i18n["s" + job.status[0].toUpperCase() + job.status.slice(1)] || job.status;
    if (finished.includes(job.status)) {
      bar.style.width = "100%";
      text.textContent = i18n.done;
      window.location.reload();
      return;
    }
    bar.style.width = Math.round(100 * (job.progress.fraction || 0)) + "%";
    text.textContent =
      job.status === "queued"
        ? i18n.queued.replace("%(position)s", job.queue_position || "?")
        : i18n.running.replace("%(tokens)s", job.progress.tokens);
    setTimeout(poll, 1000);
  }

  if (cancel) {
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        await Portal.api(live.dataset.cancelApi, { method: "POST" });
      } catch (e) {
        cancel.disabled = false;
      }
      poll();
    });
  }
  setTimeout(poll, 500);
})();
