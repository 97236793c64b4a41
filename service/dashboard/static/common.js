// Shared helpers of the mergefront dashboard (no framework, no CDN).
"use strict";

window.MF = window.MF || {};

MF.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

// The API needs a token (read scope is enough): asked once, kept for this browser tab's session only.
MF.TOKEN_KEY = "mergefront-token";
let tokenAsked = null;

MF.askToken = function (message) {
  if (tokenAsked) return tokenAsked;
  tokenAsked = new Promise((resolve) => {
    const input = MF.el("input", { id: "token-input", type: "password", autocomplete: "off", size: 50,
      placeholder: "mf_..." });
    const form = MF.el("form", { id: "token-form", class: "card token-form" },
      MF.el("p", {}, message, " Make one with ", MF.el("code", {}, "mergefront token create NAME"),
        "; it is kept for this tab's session only."),
      input, " ", MF.el("button", { type: "submit", id: "token-submit" }, "use token"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(MF.TOKEN_KEY, input.value.trim());
      form.remove();
      tokenAsked = null;
      resolve();
    });
    document.querySelector("main").prepend(form);
    input.focus();
  });
  return tokenAsked;
};

// fetch with the session's token; on 401 asks for a (new) token and tries again.
MF.fetch = async function (url, options = {}) {
  for (;;) {
    const token = sessionStorage.getItem(MF.TOKEN_KEY);
    const headers = { ...(options.headers || {}), ...(token ? { Authorization: `Bearer ${token}` } : {}) };
    const response = await fetch(url, { ...options, headers });
    if (response.status !== 401) return response;
    let detail = "";
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    await MF.askToken(token ? `That token was refused (${detail}). Paste another.` :
      "This server needs an API token.");
  }
};

// Downloads go through fetch (a plain link would carry no token).
MF.download = async function (url, filename) {
  const response = await MF.fetch(url);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = MF.words((await response.json()).detail) || detail; } catch (_) { /* not JSON */ }
    throw new MF.ApiError(response.status, detail);
  }
  const link = MF.el("a", { href: URL.createObjectURL(await response.blob()), download: filename });
  document.body.append(link);
  link.click();
  setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
};

// An API error: its status and its message in words (a 422's field errors joined, never raw JSON).
MF.ApiError = class extends Error {
  constructor(status, words) { super(words); this.status = status; }
};

MF.words = function (detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      const where = (d.loc || []).filter((p) => !["body", "query", "path"].includes(p)).join(".");
      return (where && !String(d.msg).includes(where) ? `${where}: ` : "") + String(d.msg).replace(/^Value error, /, "");
    }).join("; ");
  }
  return detail ? JSON.stringify(detail) : "";
};

MF.request = async function (url, options = {}) {
  const response = await MF.fetch(url, { ...options, headers: { Accept: "application/json", ...(options.headers || {}) } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = MF.words((await response.json()).detail) || detail; } catch (_) { /* not JSON */ }
    throw new MF.ApiError(response.status, detail);
  }
  return response.status === 204 ? null : response.json();
};

MF.getJson = (url) => MF.request(url);

MF.fmt = function (value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  return String(value);
};

// A reference point as text; entries not fixed yet (inferred after the first batch) read "?".
MF.refPoint = function (point) {
  return `[${(point || []).map((v) => (v === null || v === undefined ? "?" : String(v))).join(", ")}]`;
};

MF.seconds = function (value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(3)} s`;
};

// Stored times are naive UTC (the API adds +00:00).
MF.parseTime = function (text) {
  return text ? new Date(/[zZ]|[+-]\d\d:\d\d$/.test(text) ? text : `${text}Z`) : null;
};

// A time as people read it: to the second, in this browser's zone, with the zone named.
MF.time = function (text) {
  const when = MF.parseTime(text);
  if (!when) return "–";
  return when.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit",
    minute: "2-digit", second: "2-digit", timeZoneName: "short" });
};

MF.age = function (text) {
  const then = MF.parseTime(text);
  if (!then) return "–";
  const s = Math.max(0, (Date.now() - then.getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} days ago`;
};

MF.isDone = (job) => ["completed", "failed", "cancelled"].includes(job.state);

MF.stateBadge = (state) => MF.el("span", { class: `badge state-${state}` }, state);

// The bar and its count say the same thing: finished (completed + failed) of the budget.
MF.progress = function (job) {
  const finished = job.n_completed + job.n_failed;
  const pct = job.budget ? Math.min(100, (100 * finished) / job.budget) : 0;
  return MF.el("span", { class: "progress", title: `${job.n_completed} completed, ${job.n_failed} failed` },
    MF.el("span", { class: "bar" }, MF.el("span", { class: "fill", style: `width:${pct.toFixed(1)}%` })),
    MF.el("span", { class: "count" }, `${finished} / ${job.budget}`,
      job.n_failed ? MF.el("span", { class: "muted" }, ` (${job.n_failed} failed)`) : ""));
};

// An objective or parameter as the table and filters show it: the name a user types (no metrics./params.).
MF.typed = (column) => column.replace(/^metrics\./, "").replace(/^params\./, "");
