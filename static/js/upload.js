// Upload page: drag and drop one or many files, pick a task, upload with a progress bar.
// One file → POST /api/jobs, several → POST /api/batches; then open the job or batch page.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const i18n = document.getElementById("upload-i18n").dataset;
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("files");
  const list = document.getElementById("file-list");
  const submit = document.getElementById("upload-submit");
  const progress = document.getElementById("upload-progress");
  const bar = progress.querySelector(".bar");
  const errorBox = document.getElementById("upload-error");
  const questionRow = document.getElementById("question-row");
  const typeRow = document.getElementById("document-type-row"); // only when a type exists
  const maxFiles = Number(form.dataset.maxFiles);
  const maxBytes = Number(form.dataset.maxBytes);
  let files = [];

  function task() {
    return form.querySelector("input[name=task]:checked").value;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function render() {
    list.replaceChildren();
    files.forEach((file, index) => {
      const remove = Portal.el("button", { type: "button", className: "link small", textContent: i18n.remove });
      remove.addEventListener("click", () => {
        files.splice(index, 1);
        render();
      });
      const tooBig = file.size > maxBytes;
      list.append(
        Portal.el(
          "li",
          { className: tooBig ? "bad" : "" },
          Portal.el("span", { className: "filename" }, file.name),
          Portal.el("span", { className: "muted small" }, Portal.bytes(file.size) + (tooBig ? " · " + i18n.tooBig : "")),
          remove
        )
      );
    });
    submit.disabled = files.length === 0 || files.length > maxFiles;
    submit.textContent = files.length > 1 ? i18n.many.replace("%(n)s", files.length) : i18n.one;
    showError(files.length > maxFiles ? i18n.tooMany + " (" + files.length + " > " + maxFiles + ")" : "");
  }

  function add(fileList) {
    files = files.concat(Array.from(fileList));
    render();
  }

  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => {
    add(input.files);
    input.value = "";
  });
  ["dragenter", "dragover"].forEach((name) =>
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    })
  );
  ["dragleave", "drop"].forEach((name) =>
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.remove("over");
    })
  );
  zone.addEventListener("drop", (event) => add(event.dataTransfer.files));
  form.querySelectorAll("input[name=task]").forEach((radio) =>
    radio.addEventListener("change", () => {
      questionRow.hidden = task() !== "vqa";
      document.getElementById("question").required = task() === "vqa";
      if (typeRow) typeRow.hidden = task() !== "extract";
    })
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!files.length) return;
    const data = new FormData();
    data.append("task", task());
    if (task() === "vqa") data.append("question", document.getElementById("question").value);
    if (task() === "extract") data.append("document_type", document.getElementById("document-type").value);
    const many = files.length > 1;
    files.forEach((file) => data.append(many ? "files" : "file", file, file.name));

    const xhr = new XMLHttpRequest();
    xhr.open("POST", many ? form.dataset.batchesApi : form.dataset.jobsApi);
    xhr.setRequestHeader("X-CSRFToken", Portal.csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.style.width = Math.round((100 * e.loaded) / e.total) + "%";
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (e) {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        bar.style.width = "100%";
        const target = many ? form.dataset.batchUrl : form.dataset.jobUrl;
        window.location.assign(target.replace("/0/", "/" + body.id + "/"));
        return;
      }
      submit.disabled = false;
      progress.hidden = true;
      showError(i18n.failed + ": " + ((body && body.detail) || xhr.statusText || xhr.status));
    });
    xhr.addEventListener("error", () => {
      submit.disabled = false;
      progress.hidden = true;
      showError(i18n.failed);
    });
    submit.disabled = true;
    submit.textContent = i18n.uploading;
    progress.hidden = false;
    bar.style.width = "0%";
    showError("");
    xhr.send(data);
  });
  render();
})();
