// mta monitor: the page's script (plain JavaScript, no library).
//
// Everything that comes from a message or the log (addresses, subjects, log lines, error texts)
// is put into the page with textContent, never as markup.  The charts are SVG drawn by the
// server (spool_tools.stats.svg, which escapes its labels); they are parsed as XML and adopted,
// and the page's Content-Security-Policy runs no inline script in any case.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  if (document.body.classList.contains("login")) {
    if (new URLSearchParams(location.search).has("failed")) $("failed").hidden = false;
    return;
  }

  let session = null;
  let selected = null;
  let messages = new Map();
  let logLines = [];
  const LOG_MAX = 1000;

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  // -- the queue -------------------------------------------------------------------------

  function renderQueue(data) {
    $("queue-count").textContent = "(" + data.count + (data.count > data.messages.length ? ", the oldest " + data.messages.length + " shown" : "") + ")";
    $("queue-error").hidden = !data.error;
    $("queue-error").textContent = data.error || "";
    const body = $("queue").tBodies[0];
    const rows = [];
    messages = new Map();
    for (const m of data.messages) {
      messages.set(m.queue_id, m);
      const tr = element("tr");
      tr.dataset.id = m.queue_id;
      if (m.error) {
        tr.append(element("td"), element("td"), element("td", m.queue_id, "id"), element("td"), element("td"),
                  element("td"), element("td", "unreadable", "state"), element("td", m.error, "error"));
      } else {
        if (m.frozen) tr.classList.add("frozen");
        const rcpt = element("td", null, "rcpt");
        const delivered = new Set(m.delivered_recipients || []);
        for (const address of m.recipients_all) {
          const line = element("div", (delivered.has(address) ? "D " : "  ") + address);
          if (delivered.has(address)) line.className = "delivered";
          rcpt.append(line);
        }
        const errors = m.recipients.filter((r) => r.delay_reason).map((r) => r.address + ": " + r.delay_reason);
        const state = m.frozen ? "frozen" : { active: "being delivered", incoming: "new", deferred: "deferred" }[m.queue_name] || m.queue_name;
        tr.append(element("td", m.age, "n"), element("td", m.size, "n"), element("td", m.queue_id, "id"),
                  element("td", "<" + m.sender + ">"), element("td", m.subject), rcpt, element("td", state, "state"),
                  element("td", errors.join("\n"), "error"));
      }
      if (m.queue_id === selected) tr.classList.add("selected");
      tr.addEventListener("click", () => select(m.queue_id));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    if (selected && !messages.has(selected)) {
      $("result").textContent = "Message " + selected + " is no longer on the queue.";
    }
    renderDomains(data.domains);
  }

  function renderDomains(rows) {
    const body = $("domains").tBodies[0];
    let count = 0;
    const out = rows.map((r) => {
      count += r.count;
      const tr = element("tr");
      tr.append(element("td", r.count, "n"), element("td", r.volume, "n"), element("td", r.oldest, "n"),
                element("td", r.newest, "n"), element("td", r.domain));
      return tr;
    });
    const total = element("tr");
    total.append(element("td", count, "n"), element("td"), element("td"), element("td"), element("td", "TOTAL"));
    body.replaceChildren(...out, total);
  }

  function select(id) {
    selected = id;
    for (const tr of $("queue").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.id === id);
    $("detail").hidden = false;
    $("detail-id").textContent = id;
    $("result").textContent = "";
    $("view-text").textContent = "";
  }

  async function act(action) {
    if (!selected) return;
    const id = selected;
    if ((action === "remove" || action === "giveup") &&
        !confirm((action === "remove" ? "Remove " : "Give up on (and bounce) ") + id + "?")) return;
    const init = { method: "POST", headers: { "X-CSRF-Token": session.csrf } };
    if (action === "addrecipient") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify({ address: $("add-address").value });
    }
    $("result").className = "";
    $("result").textContent = "…";
    try {
      const response = await fetch("/api/messages/" + encodeURIComponent(id) + "/" + action, init);
      const type = response.headers.get("Content-Type") || "";
      const answer = type.startsWith("application/json") ? await response.json() : { ok: false, text: await response.text() };
      $("result").textContent = answer.text;
      $("result").className = answer.ok ? "done" : "failed";
    } catch (error) {
      $("result").textContent = "The monitor did not answer: " + error;
      $("result").className = "failed";
    }
  }

  async function show(view) {
    if (!selected) return;
    const response = await fetch("/api/messages/" + encodeURIComponent(selected) + "/" + view);
    $("view-text").textContent = await response.text();
  }

  // -- the log ---------------------------------------------------------------------------

  function hostsOf(line) {
    const found = [];
    const pattern = /\bH=(.*?)(?= [A-Za-z]+=|$)/g;
    let match;
    while ((match = pattern.exec(line)) !== null) found.push(match[1].toLowerCase());
    return found;
  }

  function matches(line, kind, text) {
    if (!text) return true;
    const lower = text.toLowerCase();
    if (kind === "id") return line.split(" ").includes(text);
    if (kind === "host") return hostsOf(line).some((h) => h.includes(lower));
    if (kind === "address") {
      return line.toLowerCase().split(/[\s<>,]+/).some((word) => word.includes("@") && word.includes(lower));
    }
    return line.toLowerCase().includes(lower);
  }

  function renderLog() {
    const kind = $("filter-kind").value;
    const text = $("filter-text").value.trim();
    const pane = $("log");
    const atBottom = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
    pane.textContent = logLines.filter((line) => matches(line, kind, text)).join("\n");
    if (atBottom) pane.scrollTop = pane.scrollHeight;
  }

  // -- the charts ------------------------------------------------------------------------

  const COLOURS = { received: "#1f77b4", delivered: "#ff7f0e", deferred: "#bcbd22", bounced: "#d62728" };

  function renderCharts(data) {
    for (const [which, target] of [["hour", "chart-hour"], ["day", "chart-day"]]) {
      const doc = new DOMParser().parseFromString(data[which], "image/svg+xml");
      const svg = doc.documentElement;
      if (svg.nodeName !== "svg") continue;
      svg.querySelectorAll("script, foreignObject").forEach((node) => node.remove());
      $(target).replaceChildren(document.adoptNode(svg));
    }
    const parts = Object.entries(data.totals).map(([name, t]) => {
      const span = element("span");
      const swatch = element("i");
      swatch.style.background = COLOURS[name] || "#888";
      span.append(swatch, document.createTextNode(name + ": " + t.hour + " last hour, " + t.day + " last day"));
      return span;
    });
    $("totals").replaceChildren(...parts);
  }

  // -- start -----------------------------------------------------------------------------

  function connect() {
    const events = new EventSource("/api/events");
    events.addEventListener("open", () => { $("connection").textContent = "live"; $("connection").className = "up"; });
    events.addEventListener("error", () => {
      $("connection").textContent = "reconnecting";
      $("connection").className = "down";
      // A closed session answers 401: EventSource gives up; go back to the login form.
      if (events.readyState === EventSource.CLOSED) location.href = "/login";
    });
    events.addEventListener("queue", (e) => renderQueue(JSON.parse(e.data)));
    events.addEventListener("charts", (e) => renderCharts(JSON.parse(e.data)));
    events.addEventListener("log", (e) => {
      const data = JSON.parse(e.data);
      logLines = (data.reset ? data.lines : logLines.concat(data.lines)).slice(-LOG_MAX);
      renderLog();
    });
  }

  async function start() {
    const response = await fetch("/api/session");
    if (response.status === 401) { location.href = "/login"; return; }
    session = await response.json();
    $("host").textContent = session.host;
    $("user").textContent = session.user;
    $("mode").textContent = session.actions.length ? "" : "read-only";
    document.body.classList.toggle("read-only", !session.actions.length);
    for (const button of document.querySelectorAll("#actions button")) {
      button.hidden = !session.actions.includes(button.dataset.action);
      button.addEventListener("click", () => act(button.dataset.action));
    }
    $("add-address").hidden = !session.actions.includes("addrecipient");
    $("views").hidden = !session.views;
    for (const button of document.querySelectorAll("#views button")) {
      button.addEventListener("click", () => show(button.dataset.view));
    }
    $("queue-hidden").hidden = session.queue;
    $("queue").hidden = !session.queue;
    $("domains-section").hidden = !session.queue;
    $("filter-kind").addEventListener("change", renderLog);
    $("filter-text").addEventListener("input", renderLog);
    $("logout").addEventListener("click", async () => {
      await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": session.csrf } });
      location.href = "/login";
    });
    connect();
  }

  start();
})();
