// Shared portal helpers. Everything user-supplied is written with textContent, never innerHTML.
"use strict";

window.Portal = (function () {
  function cookie(name) {
    const match = document.cookie.split("; ").find((row) => row.startsWith(name + "="));
    return match ? decodeURIComponent(match.split("=")[1]) : "";
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return cookie("csrftoken") || (input ? input.value : "");
  }

  // fetch() with the session cookie and the CSRF header the APIs need for writes.
  async function api(url, options = {}) {
    const headers = Object.assign({ "X-CSRFToken": csrfToken(), Accept: "application/json" }, options.headers || {});
    const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options, { headers }));
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const message = (body && (body.detail || (body.error && body.error.message))) || response.statusText;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // Build an element: el("td", {className: "x"}, "text", child)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    });
    children.forEach((child) => {
      if (child === null || child === undefined) return;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
      select.addEventListener("change", () => select.form.submit());
    });
    document.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
    document.querySelectorAll("[data-copy]").forEach((button) => {
      button.addEventListener("click", async () => {
        const source = document.querySelector(button.dataset.copy);
        try {
          await navigator.clipboard.writeText(source.textContent.trim());
          button.classList.add("done");
        } catch (e) {
          const range = document.createRange();
          range.selectNodeContents(source);
          window.getSelection().removeAllRanges();
          window.getSelection().addRange(range);
        }
      });
    });
  });

  return { api, el, bytes, csrfToken };
})();
