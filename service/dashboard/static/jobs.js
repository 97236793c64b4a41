// The jobs page: every job with state, progress, optimizer, best hypervolume and creation time; searched and
// sorted on the server. It keeps polling (faster while a job runs), so a newly submitted job appears by itself.
// A finished job can be deleted from its row (rename and notes are on the job's page).
"use strict";

(function () {
  const PAGE = 50;
  const RUNNING_MS = 2000;
  const IDLE_MS = 5000;
  const state = { offset: 0, search: "", filter: "", sort: "id", descending: true };
  let timer = null;
  const rowErrors = new Map(); // job id -> why its delete was refused, kept across the list's refreshes

  function showError(err) {
    const box = document.getElementById("error");
    box.textContent = String(err.message || err);
    box.hidden = false;
  }

  async function remove(job) {
    if (!window.confirm(`Delete job #${job.id} "${job.name}" with all its evaluations? This cannot be undone.`)) return;
    try {
      await MF.request(`/v1/jobs/${job.id}`, { method: "DELETE" });
      rowErrors.delete(job.id);
    } catch (err) {
      if (!(err instanceof MF.ApiError)) throw err;
      rowErrors.set(job.id, err.status === 403 ? `Deleting needs a token with write scope: ${err.message}`
        : `Deleting failed: ${err.message}`);
    }
    await load();
  }

  function actions(job) {
    const error = rowErrors.get(job.id);
    return MF.el("td", { class: "actions" },
      MF.isDone(job) ? MF.el("button", { type: "button", class: "delete-job", dataset: { jobId: job.id },
        title: "delete this job and its evaluations", onclick: () => remove(job).catch(showError) }, "delete") : null,
      error ? MF.el("p", { class: "error row-error" }, error) : null);
  }

  function notes(text) {
    if (!text) return null;
    const first = text.split("\n")[0];
    return MF.el("div", { class: "muted job-notes", title: text }, first.length < text.length ? `${first} …` : first);
  }

  function row(job) {
    return MF.el("tr", { class: "job-row", dataset: { jobId: job.id, state: job.state } },
      MF.el("td", {}, MF.el("a", { href: `/jobs/${job.id}` }, `#${job.id}`)),
      MF.el("td", {}, MF.el("a", { href: `/jobs/${job.id}` }, job.name),
        notes(job.notes)),
      MF.el("td", {}, MF.stateBadge(job.state)),
      MF.el("td", {}, MF.progress(job)),
      MF.el("td", {}, job.optimizer),
      MF.el("td", { class: "num" }, MF.fmt(job.hypervolume, 6),
        MF.el("div", { class: "muted" }, `ref ${MF.refPoint(job.reference_point)}`)),
      MF.el("td", { class: "num" }, job.objectives.length),
      MF.el("td", { title: MF.time(job.created_at) }, MF.age(job.created_at)), actions(job));
  }

  function headers() {
    document.querySelectorAll("#jobs th.sortable").forEach((th) => {
      const arrow = th.dataset.sort === state.sort ? (state.descending ? " ▼" : " ▲") : "";
      th.textContent = th.textContent.replace(/ [▲▼]$/, "") + arrow;
    });
  }

  async function load() {
    clearTimeout(timer);
    const params = new URLSearchParams({ offset: state.offset, limit: PAGE, sort: state.sort,
      descending: state.descending });
    if (state.search) params.set("search", state.search);
    if (state.filter) params.set("state", state.filter);
    try {
      const page = await MF.getJson(`/v1/jobs?${params}`);
      const body = document.getElementById("jobs-body");
      body.replaceChildren(...page.items.map(row));
      document.getElementById("empty").hidden = page.total > 0 || state.search || state.filter;
      document.getElementById("jobs-count").textContent =
        page.total ? `${state.offset + 1}–${state.offset + page.items.length} of ${page.total} jobs`
          : state.search || state.filter ? "no job matches" : "";
      document.getElementById("prev").disabled = state.offset === 0;
      document.getElementById("next").disabled = state.offset + PAGE >= page.total;
      document.getElementById("error").hidden = true;
      headers();
      document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
      timer = setTimeout(load, page.items.some((job) => !MF.isDone(job)) ? RUNNING_MS : IDLE_MS);
    } catch (err) {
      showError(err);
      timer = setTimeout(load, IDLE_MS);
    }
  }

  document.getElementById("jobs-search").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    state.search = form.elements.search.value.trim();
    state.filter = form.elements.state.value;
    state.offset = 0;
    load();
  });
  document.querySelectorAll("#jobs th.sortable").forEach((th) => th.addEventListener("click", () => {
    state.descending = th.dataset.sort === state.sort ? !state.descending : th.dataset.sort !== "name";
    state.sort = th.dataset.sort;
    state.offset = 0;
    load();
  }));
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); load(); });
  document.getElementById("next").addEventListener("click", () => { state.offset += PAGE; load(); });
  load();
})();
