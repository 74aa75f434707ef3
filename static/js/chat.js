// Chat page: a streaming OpenAI chat-completions client of the portal's /chat/stream/ (session
// cookie + CSRF; the same services and SSE chunks as /v1). Each turn resends the conversation; images travel as data: URLs (the
// history's images are fetched back from the owner-only document view). Model output is added
// with textContent only.
"use strict";

(function () {
  const root = document.getElementById("chat");
  if (!root) return;
  const i18n = document.getElementById("chat-i18n").dataset;
  const history = JSON.parse(document.getElementById("chat-history").textContent);
  const list = document.getElementById("messages");
  const form = document.getElementById("composer");
  const prompt = document.getElementById("prompt");
  const send = document.getElementById("send");
  const fileInput = document.getElementById("image-input");
  const attachment = document.getElementById("attachment");
  const preview = document.getElementById("attachment-preview");
  const errorBox = document.getElementById("chat-error");
  const maxImageBytes = Number(root.dataset.maxImageBytes);
  let attached = null; // {file, url}
  let controller = null; // AbortController of the running answer
  const dataUrls = new Map(); // document id → data: URL

  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
  }

  function readAsDataUrl(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  async function documentDataUrl(id) {
    if (!dataUrls.has(id)) {
      const response = await fetch(root.dataset.originalUrl.replace("/0/", "/" + id + "/"), { credentials: "same-origin" });
      if (!response.ok) throw new Error(response.statusText);
      dataUrls.set(id, await readAsDataUrl(await response.blob()));
    }
    return dataUrls.get(id);
  }

  // history entry {role, text, images: [document ids] | dataUrl} → an OpenAI message
  async function toOpenAI(message) {
    const images = message.images || [];
    if (!images.length) return { role: message.role, content: message.text };
    const content = [];
    for (const image of images) {
      const url = typeof image === "number" ? await documentDataUrl(image) : image;
      content.push({ type: "image_url", image_url: { url } });
    }
    content.push({ type: "text", text: message.text });
    return { role: message.role, content };
  }

  function bubble(role, text, imageSrc) {
    const node = Portal.el("div", { className: "msg msg-" + role });
    if (imageSrc) node.append(Portal.el("img", { className: "msgimg", src: imageSrc, alt: "" }));
    const body = Portal.el("div", { className: "msgtext" }, text);
    node.append(body);
    list.append(node);
    document.getElementById("chat-empty").hidden = true;
    list.scrollTop = list.scrollHeight;
    return { node, body };
  }

  function setAttachment(file) {
    if (attached) URL.revokeObjectURL(attached.url);
    attached = null;
    attachment.hidden = true;
    if (!file) return;
    if (file.size > maxImageBytes) {
      showError(i18n.tooBig);
      return;
    }
    attached = { file, url: URL.createObjectURL(file) };
    preview.src = attached.url;
    document.getElementById("attachment-name").textContent = file.name;
    attachment.hidden = false;
    showError("");
  }

  fileInput.addEventListener("change", () => {
    setAttachment(fileInput.files[0]);
    fileInput.value = "";
  });
  document.getElementById("attachment-remove").addEventListener("click", () => setAttachment(null));
  list.addEventListener("dragover", (event) => event.preventDefault());
  list.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = Array.from(event.dataTransfer.files).find((f) => f.type.startsWith("image/"));
    if (file) setAttachment(file);
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  prompt.addEventListener("input", () => {
    prompt.style.height = "auto";
    prompt.style.height = Math.min(prompt.scrollHeight, 200) + "px";
  });

  // Reads an SSE body; calls onData with each parsed `data:` payload.
  async function readEvents(response, onData) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = event
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trim())
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
    }
  }

  function rememberConversation(id, title) {
    if (!id || root.dataset.conversation) return;
    root.dataset.conversation = id;
    const url = root.dataset.chatUrl.replace("/0/", "/" + id + "/");
    window.history.replaceState(null, "", url);
    const empty = document.getElementById("no-conversations");
    if (empty) empty.remove();
    const link = Portal.el(
      "a",
      { href: url, "aria-current": "page" },
      Portal.el("span", { className: "convtitle" }, title.slice(0, 80) || i18n.untitled)
    );
    document.getElementById("conversation-list").prepend(Portal.el("li", {}, link));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (controller) {
      controller.abort();
      return;
    }
    const text = prompt.value.trim();
    if (!text) return;
    showError("");
    const turn = { role: "user", text, images: [] };
    let imageSrc = null;
    if (attached) {
      turn.images.push(await readAsDataUrl(attached.file));
      imageSrc = attached.url;
      attached = null;
      attachment.hidden = true;
    }
    bubble("user", text, imageSrc);
    prompt.value = "";
    prompt.style.height = "auto";
    const answer = bubble("assistant", "");
    answer.node.classList.add("streaming");

    controller = new AbortController();
    send.textContent = i18n.stop;
    let received = "";
    let conversationId = null; // set once the server has stored this turn's question
    try {
      const messages = [];
      for (const message of history.concat([turn])) messages.push(await toOpenAI(message));
      const response = await fetch(root.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        signal: controller.signal,
        headers: { "Content-Type": "application/json", "X-CSRFToken": Portal.csrfToken() },
        body: JSON.stringify({ model: root.dataset.model, messages, stream: true }),
      });
      if (!response.ok) {
        let message = response.statusText;
        try {
          message = (await response.json()).error.message;
        } catch (e) {
          /* not JSON: keep the status text */
        }
        throw new Error(message);
      }
      conversationId = response.headers.get("X-DocPlatform-Conversation");
      await readEvents(response, (payload) => {
        if (payload.error) throw new Error(payload.error.message);
        const choice = payload.choices && payload.choices[0];
        const piece = choice && choice.delta && choice.delta.content;
        if (piece) {
          received += piece;
          answer.body.textContent = received;
          list.scrollTop = list.scrollHeight;
        }
      });
      history.push(turn, { role: "assistant", text: received, images: [] });
      rememberConversation(conversationId, text);
    } catch (error) {
      if (conversationId) {
        // Stopped or broken off after the server stored the question: keep the page's history in
        // step with the stored one (the next turn resends both), with what arrived of the answer.
        history.push(turn, { role: "assistant", text: received, images: [] });
        rememberConversation(conversationId, text);
      }
      if (error.name !== "AbortError") {
        showError(i18n.failed + ": " + error.message);
        if (!received) answer.node.remove();
      }
      if (!conversationId) prompt.value = text;
    } finally {
      answer.node.classList.remove("streaming");
      controller = null;
      send.textContent = i18n.send;
    }
  });
})();
