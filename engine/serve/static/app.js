// The opctl console: plain JS, no build step. Every value from the store (observed data, model
// text, names) reaches the page through textContent or attribute setters, never innerHTML.
"use strict";

const TOKEN_KEY = "opctl-console-token"; // sessionStorage: gone when the tab closes
const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z" : "-");
const chip = (state) => el("span", { class: `chip s-${state}`, text: state });
const json = (value) => JSON.stringify(value, null, 2);

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const reply = await fetch(`/api/v1${path}`, {
    method: options.method || "GET", headers, cache: "no-store",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const data = reply.headers.get("content-type")?.includes("json") ? await reply.json() : null;
  if (!reply.ok) {
    const detail = typeof data?.detail === "string" ? data.detail : `HTTP ${reply.status}`;
    throw new ApiError(reply.status, detail);
  }
  return data;
}

function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = error instanceof ApiError && error.status === 401
    ? "Sign in with a console token (OPCTL_SERVE_TOKENS)." : `Error: ${error.message}`;
  box.hidden = false;
}

// ------------------------------------------------------------------ pages

async function overview() {
  const [status, invariants, incidents, tickets] = await Promise.all(
    [api("/status"), api("/invariants"), api("/incidents?status=open"), api("/tickets?status=open")]);
  const killed = status.kill.on;
  const killButton = el("button", {
    id: "kill-button", class: killed ? "primary" : "danger", type: "button",
    onclick: () => confirmKill(!killed),
  }, killed ? "Resume acting…" : "Kill switch…");
  return [
    el("h1", { text: `${status.subject}` }),
    el("div", { class: "cards" },
      card("Mode", status.mode.mode + (status.mode.source === "override" ? ` (set by ${status.mode.actor})` : " (config)"), "mode"),
      card("Kill switch", killed ? `ON (${status.kill.actor})` : "off", "kill", killed ? "s-on" : "s-ok"),
      card("Leader", status.leader, "leader"),
      card("Open tickets", status.open_tickets, "open-count"),
      card("Active silences", status.active_silences, "silence-count")),
    el("div", { class: "row" }, killButton),
    el("h2", { text: "Invariants" }),
    el("div", { class: "scroll" }, el("table", { id: "invariants" },
      el("thead", {}, el("tr", {}, el("th", { text: "Invariant" }), el("th", { text: "State" }),
        el("th", { class: "wide", text: "Severity" }), el("th", { text: "Not ok" }), el("th", { text: "Open tickets" }))),
      el("tbody", {}, invariants.map((inv) => el("tr", {},
        el("td", { text: inv.name }), el("td", {}, chip(inv.state)), el("td", { class: "wide", text: inv.severity }),
        el("td", { text: inv.entities.map((e) => `${e.key || "-"} (${e.status})`).join(", ") || "-" }),
        el("td", { text: inv.open_tickets })))))),
    el("h2", { text: "Open incidents" }),
    incidents.length === 0 ? el("p", { class: "muted", id: "no-incidents", text: "No open incidents." }) :
      el("ul", { id: "incidents", class: "stack" }, incidents.map((i) => el("li", { class: "incident", "data-incident": i.id },
        el("strong", { text: `Incident #${i.id}` }), " ", el("span", { class: "muted", text: i.group_key }), " · ",
        i.lead_ticket_id ? el("a", { href: `#/tickets/${i.lead_ticket_id}`, class: "incident-lead", text: `diagnosed through ticket #${i.lead_ticket_id}` })
          : el("span", { class: "muted", text: "not diagnosed yet" }),
        " · ", `${i.tickets.length} ticket(s): `,
        i.tickets.map((t) => [el("a", { href: `#/tickets/${t.id}`, text: `#${t.id} ${t.invariant}/${t.key || "-"}` }), " "])))),
    el("h2", { text: "Open tickets" }),
    tickets.length === 0 ? el("p", { class: "muted", id: "no-tickets", text: "No open tickets." }) :
      el("div", { class: "scroll" }, el("table", { id: "tickets" },
        el("thead", {}, el("tr", {}, el("th", { text: "#" }), el("th", { text: "Status" }), el("th", { text: "Invariant / key" }),
          el("th", { text: "Message" }), el("th", { class: "wide", text: "Since" }))),
        el("tbody", {}, tickets.map((t) => el("tr", { class: "ticket-row", "data-ticket": t.id },
          el("td", {}, el("a", { href: `#/tickets/${t.id}`, class: "ticket-link", text: `#${t.id}` })),
          el("td", {}, chip(t.status), t.silenced_by ? el("span", { class: "chip", text: `silenced #${t.silenced_by}` }) : null,
            t.muted_by ? el("span", { class: "chip", title: t.muted_by, text: "muted" }) : null),
          el("td", { text: `${t.invariant} / ${t.key || "-"}` }), el("td", { text: t.message }),
          el("td", { class: "wide", text: when(t.first_seen) })))))),
  ];
}

function card(label, value, id, cls) {
  return el("div", { class: "card" }, el("span", { class: "k", text: label }),
    el("span", { class: `v ${cls || ""}`, id: `card-${id}`, text: value }));
}

async function ticketPage(id) {
  const t = await api(`/tickets/${id}`);
  const diagnosis = t.diagnosis;
  const promptBox = el("div", { id: "prompt" });
  return [
    el("p", {}, el("a", { href: "#/", text: "← Overview" })),
    el("h1", { text: `Ticket #${t.id}: ${t.invariant} / ${t.key || "-"}` }),
    el("div", { class: "row" }, chip(t.status), t.held ? chip("held") : null,
      t.silenced_by ? el("span", { class: "chip", text: `silenced by #${t.silenced_by}` }) : null,
      el("span", { class: "muted", text: `${t.severity} · since ${when(t.first_seen)} · seen ${t.occurrences}×` })),
    el("p", { id: "message", text: t.message }),
    t.incident_id ? el("p", { class: "muted", id: "incident" }, `Incident #${t.incident_id}`) : null,
    t.muted_by ? el("p", { id: "muted", text: `Recorded only (not diagnosed, notified or acted on): ${t.muted_by}` }) : null,
    el("h2", { text: "Diagnosis" }),
    diagnosis ? el("div", { class: "diag", id: "diagnosis" },
      el("p", {}, el("strong", { text: "Summary: " }), el("span", { id: "diagnosis-summary", text: diagnosis.summary || "" })),
      el("p", {}, el("strong", { text: "Root cause: " }), el("span", { text: diagnosis.root_cause || "" })),
      el("p", { class: "muted", text: `by ${diagnosis.provider}${diagnosis.model ? " (" + diagnosis.model + ")" : ""} · confidence ${diagnosis.confidence ?? "-"}` }),
      el("strong", { text: "Evidence" }),
      el("ul", { id: "evidence" }, (diagnosis.evidence || []).map((e) => el("li", { text: typeof e === "string" ? e : json(e) }))),
    ) : el("p", { class: "muted", id: "diagnosis", text: "Not diagnosed yet." }),
    el("h2", { text: "Proposals" }),
    t.proposals.length === 0 ? el("p", { class: "muted", text: "None." }) :
      el("div", { id: "proposals" }, t.proposals.map(proposalBox)),
    el("h2", { text: "Executions and verification" }),
    t.executions.length === 0 ? el("p", { class: "muted", id: "executions", text: "None yet." }) :
      el("div", { class: "scroll" }, el("table", { id: "executions" },
        el("thead", {}, el("tr", {}, el("th", { text: "#" }), el("th", { text: "Action" }), el("th", { text: "Status" }),
          el("th", { class: "wide", text: "Request" }), el("th", { text: "Result" }))),
        el("tbody", {}, t.executions.map((x) => el("tr", { class: "execution" },
          el("td", { text: x.id }), el("td", { text: x.action }), el("td", {}, chip(x.status)),
          el("td", { class: "wide" }, el("pre", { text: json(x.request) })),
          el("td", { text: `${x.error || x.response || ""} ${x.duration_s != null ? "(" + x.duration_s.toFixed(3) + " s)" : ""}` })))))),
    el("div", { id: "verification" }, t.events.filter((e) => ["verifying", "effect_confirmed", "verified", "recovered", "verification_failed"].includes(e.kind))
      .map((e) => el("p", { class: "verification-event" }, chip(e.kind), " ", e.text || ""))),
    el("h2", { text: "Timeline" }),
    el("div", { class: "scroll" }, el("table", { id: "timeline" },
      el("tbody", {}, t.events.map((e) => el("tr", { class: "event" },
        el("td", { class: "wide", text: when(e.at) }), el("td", {}, chip(e.label || e.kind)),
        el("td", { text: e.text || json(e.data) }), el("td", { class: "wide muted", text: e.actor })))))),
    el("h2", { text: "Observed snapshot" }),
    el("pre", { id: "snapshot", text: json(t.snapshot) }),
    el("h2", { text: "Rendered prompt" }),
    el("button", { type: "button", id: "show-prompt", onclick: async () => {
      try {
        const p = await api(`/tickets/${id}/prompt`);
        promptBox.replaceChildren(el("h3", { text: "System" }), el("pre", { text: p.system }), el("h3", { text: "User" }), el("pre", { text: p.user }));
      } catch (error) { showError(error); }
    } }, "Show the prompt"),
    promptBox,
  ];
}

function proposalBox(p) {
  const waiting = p.status === "awaiting_approval";
  const comment = el("input", { type: "text", maxlength: 2000, id: `comment-${p.id}`, placeholder: "comment (recorded)", "aria-label": `Comment for proposal ${p.id}` });
  const decide = (verb) => async () => {
    try {
      await api(`/proposals/${p.id}/${verb}`, { method: "POST", body: { comment: comment.value } });
      showError(null);
      await render();
    } catch (error) { showError(error); }
  };
  return el("div", { class: "proposal", "data-proposal": p.id, "data-status": p.status, "data-action": p.action },
    el("div", { class: "row" }, el("strong", { text: `#${p.id} ${p.action}` }), chip(p.status),
      el("span", { class: "muted", text: `from ${p.source}${p.decided_by ? " · decided by " + p.decided_by : ""}` })),
    el("pre", { text: json(p.params) }),
    p.reason ? el("p", { text: p.reason }) : null,
    p.gate || p.detail ? el("p", { class: "muted", text: `gate ${p.gate || "-"}: ${p.detail || ""}` }) : null,
    waiting ? el("div", { class: "row" }, comment,
      el("button", { type: "button", class: "primary approve", onclick: decide("approve") }, "Approve"),
      el("button", { type: "button", class: "reject", onclick: decide("reject") }, "Reject")) : null);
}

async function silencesPage() {
  const silences = await api("/silences");
  const input = (id, label, attrs = {}) => el("div", { class: "stack" }, el("label", { for: id, text: label }), el("input", { id, type: "text", ...attrs }));
  const form = el("form", { id: "silence-form", class: "stack", onsubmit: async (event) => {
    event.preventDefault();
    const matchers = ["invariant", "key", "severity"].map((name) => ({ name, value: $(`sil-${name}`).value.trim(), regex: $("sil-regex").checked }))
      .filter((m) => m.value !== "");
    try {
      await api("/silences", { method: "POST", body: { matchers, duration_s: Number($("sil-minutes").value) * 60, comment: $("sil-comment").value } });
      showError(null);
      await render();
    } catch (error) { showError(error); }
  } },
    el("div", { class: "row" }, input("sil-invariant", "Invariant"), input("sil-key", "Key"), input("sil-severity", "Severity")),
    el("div", { class: "row" }, el("input", { type: "checkbox", id: "sil-regex" }), el("label", { for: "sil-regex", text: "values are regular expressions" })),
    el("div", { class: "row" }, input("sil-minutes", "Minutes", { value: "60", inputmode: "numeric" }), input("sil-comment", "Comment (why)", { required: true })),
    el("div", { class: "row" }, el("button", { type: "submit", class: "primary", id: "sil-add" }, "Add silence")));
  return [
    el("h1", { text: "Silences" }),
    el("p", { class: "muted", text: "A silenced ticket is recorded, but neither notified nor acted on while the silence is active." }),
    form,
    el("h2", { text: "All silences" }),
    silences.length === 0 ? el("p", { class: "muted", text: "None." }) :
      el("div", { class: "scroll" }, el("table", { id: "silences" },
        el("thead", {}, el("tr", {}, el("th", { text: "#" }), el("th", { text: "State" }), el("th", { text: "Matchers" }),
          el("th", { class: "wide", text: "Ends" }), el("th", { text: "By / why" }), el("th", { text: "" }))),
        el("tbody", {}, silences.map((s) => el("tr", { class: "silence", "data-silence": s.id },
          el("td", { text: s.id }), el("td", {}, chip(s.state)),
          el("td", { text: s.matchers.map((m) => `${m.name}${m.regex ? "=~" : "="}${m.value}`).join(" ") }),
          el("td", { class: "wide", text: when(s.ends_at) }), el("td", { text: `${s.created_by}: ${s.comment}` }),
          el("td", {}, s.state === "expired" ? null : el("button", { type: "button", class: "expire", onclick: async () => {
            try { await api(`/silences/${s.id}`, { method: "DELETE" }); await render(); } catch (error) { showError(error); }
          } }, "Expire"))))))),
  ];
}

// ------------------------------------------------------------------ kill switch, behind a confirmation

function confirmKill(on) {
  const dialog = $("kill-dialog");
  $("kill-title").textContent = on ? "Turn the kill switch ON?" : "Turn the kill switch off?";
  $("kill-text").textContent = on
    ? "Every engine on this store stops acting within one tick; proposals waiting for approval are cancelled."
    : "Engines act again from their next tick; tickets parked by the kill switch are attempted again.";
  $("kill-reason").value = "";
  dialog.dataset.on = on ? "1" : "0";
  dialog.returnValue = ""; // Escape keeps the last value: a cancel must never repeat a confirm
  dialog.showModal();
}

async function onKillClosed() {
  const dialog = $("kill-dialog");
  if (dialog.returnValue !== "confirm") return;
  try {
    await api(dialog.dataset.on === "1" ? "/kill" : "/resume", { method: "POST", body: { comment: $("kill-reason").value } });
    showError(null);
    await render();
  } catch (error) { showError(error); }
}

// ------------------------------------------------------------------ routing, live updates, login

let rendering = Promise.resolve();

function route() {
  const hash = location.hash || "#/";
  const ticket = hash.match(/^#\/tickets\/(\d+)$/);
  if (ticket) return () => ticketPage(Number(ticket[1]));
  if (hash === "#/silences") return silencesPage;
  return overview;
}

function render() {
  rendering = rendering.then(async () => {
    const main = $("main");
    const focused = document.activeElement?.id;
    // a live refresh must not wipe what someone is typing
    const typed = new Map([...main.querySelectorAll("input[id]")].map((i) => [i.id, i.type === "checkbox" ? i.checked : i.value]));
    try {
      const nodes = await route()();
      main.replaceChildren(...nodes);
      for (const [id, value] of typed) {
        const input = $(id);
        if (!input) continue;
        if (input.type === "checkbox") input.checked = value; else input.value = value;
      }
      main.dataset.rendered = String(Date.now());
      showError(null);
      if (focused && $(focused) && focused !== "main") $(focused).focus();
    } catch (error) {
      showError(error);
    }
  });
  return rendering;
}

// SSE over fetch (EventSource cannot send the Authorization header), reconnecting with backoff.
async function live() {
  let lastId = null;
  for (;;) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (token()) headers.Authorization = `Bearer ${token()}`;
      if (lastId !== null) headers["Last-Event-ID"] = String(lastId);
      const reply = await fetch("/api/v1/stream", { headers, cache: "no-store" });
      if (!reply.ok) throw new ApiError(reply.status, `HTTP ${reply.status}`);
      $("live").textContent = "live";
      $("live").classList.add("on");
      const reader = reply.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const id = frame.split("\n").find((line) => line.startsWith("id: "));
          if (id) {
            const seen = Number(id.slice(4));
            if (seen !== lastId) { lastId = seen; render(); }
          }
        }
      }
    } catch (error) {
      // shown by the status line; the page keeps its last state
    }
    $("live").textContent = "offline (reconnecting)";
    $("live").classList.remove("on");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function showWho() {
  const who = $("whoami");
  try {
    const me = await api("/whoami");
    who.textContent = `${me.name} (${me.role})`;
    $("logout").hidden = !token();
    // signed in: the token field gives its room to the page (phones)
    for (const part of $("login").querySelectorAll("label, input, button[type=submit]")) part.hidden = Boolean(token());
  } catch (error) {
    who.textContent = "";
    $("logout").hidden = !token();
    for (const part of $("login").querySelectorAll("label, input, button[type=submit]")) part.hidden = false;
  }
}

function start() {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    showWho();
    render();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showWho(); render(); });
  $("kill-dialog").addEventListener("close", onKillClosed);
  window.addEventListener("hashchange", () => { render().then(() => $("main").focus()); });
  showWho();
  render();
  live();
}

start();
