// The chat page: posts the conversation to /chat with stream=true, reads the SSE stream with
// fetch + ReadableStream, shows the text as it streams, then the checked answer from `done`.
// Everything that comes from the corpus or the model is inserted as text (textContent /
// createElement), never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "paperqa.apiKey";
  const MODE_STORAGE = "paperqa.mode";
  const MAX_MESSAGES = 20; // the server's default PAPERQA_MAX_MESSAGES
  const MAX_CHARS = 4000; // the server's default PAPERQA_MAX_MESSAGE_CHARS

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    conversation: $("conversation"),
    form: $("ask"),
    question: $("question"),
    send: $("send"),
    apiKey: $("api-key"),
    mode: $("mode"),
    newChat: $("new-chat"),
    paper: $("paper"),
    paperTitle: $("paper-title"),
    paperMeta: $("paper-meta"),
    paperAbstract: $("paper-abstract"),
    paperLink: $("paper-link"),
    paperClose: $("paper-close"),
  };

  /** @type {{role: string, content: string}[]} */
  let history = [];
  let controller = null; // aborts the answer being streamed
  let paperRequest = 0; // only the latest paper look-up may fill the panel
  let activeTitle = null;

  // --- small helpers ---------------------------------------------------------------------------
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function authHeaders() {
    const key = (localStorage.getItem(KEY_STORAGE) || "").trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function responseError(res) {
    let message = res.statusText || "request failed";
    try {
      const body = await res.json();
      const detail = body && body.detail;
      if (typeof detail === "string") message = detail;
      else if (Array.isArray(detail)) message = detail.map((d) => (d && d.msg) || String(d)).join("; ");
      else if (detail) message = JSON.stringify(detail);
    } catch (_) {
      /* not JSON: keep the status text */
    }
    return new HttpError(res.status, `${res.status}: ${message}`);
  }

  function describe(err) {
    if (err instanceof HttpError) {
      if (err.status === 503) return `The service is busy or unavailable (${err.message}). Try again in a moment.`;
      if (err.status === 401) {
        askForKey();
        return "This service needs an API key, and the one saved in this browser is missing or wrong. " +
          "Enter the key under Settings (top right), then ask again.";
      }
      if (err.status === 403) return `Not allowed (${err.message}). Check the API key in Settings.`;
      if (err.status === 429) return `Too many questions in a short time (${err.message}). Wait a moment and ask again.`;
      return `The service refused the question (${err.message}).`;
    }
    if (err instanceof TypeError) return `Could not reach the service (${err.message}).`;
    return `The answer failed: ${err && err.message ? err.message : err}`;
  }

  /** Opens Settings with the key field focused, so a 401 can be fixed right away. */
  function askForKey() {
    const settings = document.querySelector("details.settings");
    if (settings) settings.open = true;
    ui.apiKey.focus();
  }

  function safeUrl(value) {
    if (typeof value !== "string") return null;
    try {
      const url = new URL(value, window.location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  // --- SSE over fetch ----------------------------------------------------------------------------
  function parseBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue; // comment (ping)
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    return data.length ? { event, data: data.join("\n") } : null;
  }

  async function* readEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let carry = ""; // a lone "\r" at a chunk's end may be the first half of "\r\n"
    try {
      for (;;) {
        const { value, done } = await reader.read();
        let text = carry + (done ? decoder.decode() : decoder.decode(value, { stream: true }));
        carry = "";
        if (!done && text.endsWith("\r")) {
          carry = "\r";
          text = text.slice(0, -1);
        }
        buffer += text.replace(/\r\n|\r/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) !== -1) {
          const event = parseBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (event) yield event;
        }
        if (done) break;
      }
      const last = parseBlock(buffer);
      if (last) yield last;
    } finally {
      reader.releaseLock();
    }
  }

  // --- the conversation view ---------------------------------------------------------------------
  function scrollToEnd() {
    window.scrollTo({ top: document.body.scrollHeight });
  }

  function addUserTurn(text) {
    const item = el("li", "turn user");
    item.appendChild(el("p", "label", "You"));
    item.appendChild(el("div", "question-text", text));
    ui.conversation.appendChild(item);
    return item;
  }

  function addAssistantTurn() {
    const item = el("li", "turn assistant");
    item.dataset.state = "pending";
    item.appendChild(el("p", "label", "Answer"));
    const answer = el("p", "answer pending", "Searching the papers…");
    item.appendChild(answer);
    const notices = el("div", "notices");
    item.appendChild(notices);
    ui.conversation.appendChild(item);
    scrollToEnd();
    return {
      item,
      pending(text) {
        answer.textContent = text;
      },
      stream(text) {
        item.dataset.state = "streaming";
        answer.className = "answer streaming";
        answer.textContent = text;
      },
      notice(text, kind) {
        notices.appendChild(el("p", `notice ${kind}`, text));
      },
      fail(text) {
        item.dataset.state = "failed";
        item.classList.add("failed");
        if (answer.classList.contains("pending")) answer.remove(); // nothing was streamed
        else answer.className = "answer"; // keep what was streamed, under the error
        this.notice(text, "error");
      },
      finish(result) {
        answer.className = "answer";
        answer.replaceChildren(...answerNodes(result.answer || "", result.citations || []));
        if (result.refused) {
          item.classList.add("refused");
          item.querySelector(".label").textContent = "No answer in the indexed papers";
        }
        if (result.fallback_reason) {
          this.notice(`The model could not answer (${result.fallback_reason}); this is an extractive answer.`, "warn");
        }
        const refs = referenceList(result);
        if (refs) item.appendChild(refs);
        const closest = suggestionList(result);
        if (closest) item.appendChild(closest);
        item.appendChild(el("p", "meta-line", metaLine(result)));
        item.dataset.state = "done";
        scrollToEnd();
      },
    };
  }

  /** The answer text with each `[n]` that names a citation turned into a button. */
  function answerNodes(text, citations) {
    const byMarker = new Map(citations.map((c) => [c.marker, c]));
    const nodes = [];
    const pattern = /\[(\d{1,3})\]/g;
    let last = 0;
    let match;
    while ((match = pattern.exec(text)) !== null) {
      const citation = byMarker.get(Number(match[1]));
      if (!citation) continue;
      if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
      const button = el("button", "marker", `[${citation.marker}]`);
      button.type = "button";
      button.title = citation.title;
      button.setAttribute("aria-label", `Source ${citation.marker}: ${citation.title}`);
      button.addEventListener("click", () => openPaper(citation.paper_id, citation.title, null, citation.evidence));
      nodes.push(button);
      last = match.index + match[0].length;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    return nodes;
  }

  function referenceList(result) {
    let heading;
    let entries;
    if (result.citations && result.citations.length) {
      heading = "Cited papers";
      entries = result.citations.map((c) => ({ n: c.marker, paper_id: c.paper_id, title: c.title, evidence: c.evidence }));
    } else if (!result.refused && result.sources && result.sources.length) {
      heading = "Sources given to the model";
      entries = result.sources.map((s) => ({ n: s.n, paper_id: s.paper_id, title: s.title, evidence: s.evidence }));
    } else {
      return null;
    }
    const box = el("div", result.citations && result.citations.length ? "refs cited" : "refs sources");
    box.appendChild(el("h3", null, heading));
    const list = el("ol");
    for (const entry of entries) {
      const item = el("li");
      item.appendChild(el("span", "num", `[${entry.n}]`));
      const button = el("button", "paper-title", entry.title);
      button.type = "button";
      button.dataset.paperId = entry.paper_id;
      button.addEventListener("click", () => openPaper(entry.paper_id, entry.title, button, entry.evidence));
      item.appendChild(button);
      list.appendChild(item);
    }
    box.appendChild(list);
    return box;
  }

  /** For a refusal: the closest papers in the index, offered to open (not citations). */
  function suggestionList(result) {
    if (!result.refused || !result.suggestions || !result.suggestions.length) return null;
    const box = el("div", "refs suggestions");
    box.appendChild(el("h3", null, "Closest papers in the index"));
    box.appendChild(el("p", "hint", "They do not answer the question; they are the nearest the index has."));
    const list = el("ul");
    for (const entry of result.suggestions) {
      const item = el("li");
      const button = el("button", "paper-title", entry.title);
      button.type = "button";
      button.dataset.paperId = entry.paper_id;
      button.addEventListener("click", () => openPaper(entry.paper_id, entry.title, button));
      item.appendChild(button);
      list.appendChild(item);
    }
    box.appendChild(list);
    return box;
  }

  function metaLine(result) {
    const parts = [result.backend === "none" ? "no model call" : result.backend];
    if (result.model) parts.push(result.model);
    parts.push(result.mode);
    if (result.timings && result.timings.total_ms) parts.push(`${(result.timings.total_ms / 1000).toFixed(1)} s`);
    if (result.dropped_citations) parts.push(`${result.dropped_citations} unsupported citation(s) removed`);
    if (result.unsupported && result.unsupported.length) {
      parts.push(`${result.unsupported.length} sentence(s) the claim check replaced or removed`);
    }
    if (result.trimmed) parts.push("a reply cut mid-sentence was trimmed");
    return parts.join(" · ");
  }

  // --- the paper panel ---------------------------------------------------------------------------
  /** The abstract as text nodes, with each evidence span (character offsets) in a <mark>. */
  function abstractNodes(text, evidence) {
    const spans = (evidence || [])
      .filter((e) => Number.isInteger(e.start) && Number.isInteger(e.end) && e.start < e.end && e.end <= text.length)
      .sort((a, b) => a.start - b.start);
    const nodes = [];
    let last = 0;
    for (const span of spans) {
      if (span.start < last) continue; // overlapping spans: keep the first
      if (span.start > last) nodes.push(document.createTextNode(text.slice(last, span.start)));
      nodes.push(el("mark", "evidence", text.slice(span.start, span.end)));
      last = span.end;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    return nodes;
  }

  async function openPaper(paperId, title, button, evidence) {
    const request = ++paperRequest;
    if (activeTitle) activeTitle.classList.remove("active");
    activeTitle = button;
    if (button) button.classList.add("active");
    ui.paper.hidden = false;
    ui.paper.dataset.paperId = paperId;
    ui.paper.dataset.state = "loading";
    ui.paperTitle.textContent = title || paperId;
    ui.paperMeta.textContent = "";
    ui.paperAbstract.textContent = "Loading the abstract…";
    ui.paperLink.hidden = true;
    ui.paperLink.removeAttribute("href");
    try {
      const res = await fetch(`/papers/${encodeURIComponent(paperId)}`, {
        headers: { Accept: "application/json", ...authHeaders() },
      });
      if (!res.ok) throw await responseError(res);
      const paper = await res.json();
      if (request !== paperRequest) return;
      ui.paperTitle.textContent = paper.title || title || paperId;
      ui.paperMeta.textContent = [paper.authors, paper.date, paper.categories].filter(Boolean).join(" · ");
      if (paper.abstract) {
        ui.paperAbstract.replaceChildren(...abstractNodes(paper.abstract, evidence));
        const first = ui.paperAbstract.querySelector("mark");
        if (first) first.scrollIntoView({ block: "nearest" });
      } else {
        ui.paperAbstract.textContent = "(no abstract)";
      }
      const url = safeUrl(paper.url);
      if (url) {
        ui.paperLink.href = url;
        ui.paperLink.hidden = false;
      }
      ui.paper.dataset.state = "loaded";
    } catch (err) {
      if (request !== paperRequest) return;
      ui.paperAbstract.textContent = `Could not load the abstract: ${err && err.message ? err.message : err}`;
      ui.paper.dataset.state = "failed";
    }
    if (window.matchMedia("(min-width: 721px)").matches) ui.paper.scrollIntoView({ block: "nearest" });
  }

  function closePaper() {
    paperRequest++;
    ui.paper.hidden = true;
    if (activeTitle) activeTitle.classList.remove("active");
    activeTitle = null;
  }

  // --- asking ----------------------------------------------------------------------------------------
  function outgoingMessages() {
    return history.slice(-MAX_MESSAGES).map((m) => ({ role: m.role, content: m.content.slice(0, MAX_CHARS) }));
  }

  function setBusy(busy) {
    ui.send.disabled = busy;
    ui.send.textContent = busy ? "…" : "Ask";
  }

  async function ask(question) {
    history.push({ role: "user", content: question });
    addUserTurn(question);
    const view = addAssistantTurn();
    controller = new AbortController();
    const mine = controller;
    setBusy(true);
    let done = null;
    let streamed = "";
    const problems = [];
    try {
      const body = { messages: outgoingMessages(), stream: true };
      if (ui.mode.value) body.mode = ui.mode.value;
      const res = await fetch("/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
        body: JSON.stringify(body),
        signal: mine.signal,
      });
      if (!res.ok) throw await responseError(res);
      if (!res.body) throw new Error("the response has no body");
      for await (const event of readEvents(res.body)) {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch (_) {
          continue;
        }
        if (event.event === "sources") {
          view.pending(data.length ? `Reading ${data.length} paper(s)…` : "No paper matches well…");
        } else if (event.event === "delta") {
          streamed += data.text || "";
          view.stream(streamed);
          scrollToEnd();
        } else if (event.event === "error") {
          problems.push(data.message || "unknown error");
        } else if (event.event === "done") {
          done = data;
        }
      }
      if (!done) {
        throw new Error(problems.length ? problems[problems.length - 1] : "the stream ended before the answer was complete");
      }
      // A fallback is explained once, by finish(); other `error` events are shown as warnings.
      if (!done.fallback_reason) for (const problem of problems) view.notice(problem, "warn");
      view.finish(done);
      history.push({ role: "assistant", content: done.answer || "" });
    } catch (err) {
      if (mine.signal.aborted) return;
      view.fail(describe(err));
      history.pop(); // the question got no answer: it is not part of the conversation
    } finally {
      if (controller === mine) {
        controller = null;
        setBusy(false);
      }
    }
  }

  async function loadStatus() {
    try {
      const res = await fetch("/health", { headers: authHeaders() });
      const body = await res.json();
      if (!res.ok || !body.ready) throw new Error("not ready");
      const model = body.llm_model ? `${body.llm_backend} (${body.llm_model})` : body.llm_backend;
      ui.status.textContent = `${body.papers} papers · ${model}`;
      ui.status.classList.remove("bad");
    } catch (_) {
      ui.status.textContent = "The service is not reachable or not ready.";
      ui.status.classList.add("bad");
    }
  }

  function newConversation() {
    if (controller) controller.abort();
    controller = null;
    setBusy(false);
    history = [];
    for (const node of [...ui.conversation.querySelectorAll(".turn")]) node.remove();
    closePaper();
    ui.question.focus();
  }

  // --- wiring ------------------------------------------------------------------------------------------
  ui.apiKey.value = localStorage.getItem(KEY_STORAGE) || "";
  ui.apiKey.addEventListener("change", () => {
    const key = ui.apiKey.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  });
  ui.mode.value = localStorage.getItem(MODE_STORAGE) || "";
  ui.mode.addEventListener("change", () => localStorage.setItem(MODE_STORAGE, ui.mode.value));
  $("settings-form").addEventListener("submit", (event) => event.preventDefault());
  ui.newChat.addEventListener("click", newConversation);
  ui.paperClose.addEventListener("click", closePaper);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.paper.hidden) closePaper();
  });

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const question = ui.question.value.trim();
    if (!question || controller) return;
    ui.question.value = "";
    ask(question);
  });
  ui.question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.form.requestSubmit();
    }
  });

  loadStatus();
})();
