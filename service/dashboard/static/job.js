// The job page: summary, front, parallel coordinates, decision views, hypervolume, table; polls while the job
// runs so new evaluations appear live, and stops for good when the job does not exist.
"use strict";

(function () {
  const jobId = Number(location.pathname.split("/").filter(Boolean).pop());
  let seen = null;
  let sensitivityAt = null;

  function showError(err) {
    const box = document.getElementById("error");
    box.textContent = err ? String(err.message || err) : "";
    box.hidden = !err;
  }

  MF.guard = (fn) => async (...args) => {
    try { await fn(...args); } catch (err) { showError(err); }
  };

  async function cancel() {
    if (!window.confirm(`Cancel job #${jobId}? Finished evaluations are kept; running ones are abandoned.`)) return;
    try {
      await MF.request(`/v1/jobs/${jobId}/cancel`, { method: "POST" });
    } catch (err) {
      showError(err.status === 403 ? `Cancelling needs a token with write scope: ${err.message}` : err);
      return;
    }
    seen = null;
    await refresh();
  }

  function summary(job) {
    document.title = `mergefront · ${job.name} (#${job.id})`;
    document.getElementById("crumb").textContent = `#${job.id} ${job.name}`;
    const item = (name, ...value) => MF.el("div", { class: "item" }, MF.el("span", { class: "label" }, name),
      MF.el("span", { class: "value" }, ...value));
    const actions = MF.isDone(job) ? [] : [MF.el("button", { type: "button", id: "cancel-job", onclick: cancel },
      "cancel job")];
    document.getElementById("summary").replaceChildren(
      MF.el("h1", {}, job.name, MF.el("span", { class: "muted" }, ` #${job.id}`), " ", ...actions),
      MF.el("div", { class: "items" },
        item("state", MF.stateBadge(job.state), MF.isDone(job) ? "" : MF.el("span", { class: "live" }, "● live")),
        item("progress", MF.progress(job)),
        item("optimizer", job.optimizer),
        item("hypervolume", MF.el("span", { id: "job-hv" }, MF.fmt(job.hypervolume, 6)),
          MF.el("span", { class: "muted" }, ` (reference point ${MF.refPoint(job.reference_point)})`)),
        item("objectives", job.objectives.map((o, k) => `${o} (${job.maximize[k] ? "max" : "min"})`).join(", ")),
        item("created", MF.el("span", { title: MF.time(job.created_at) }, MF.time(job.created_at))),
        job.notes ? item("notes", job.notes) : null),
      ...(job.error ? [MF.el("pre", { class: "error" }, job.error)] : []));
  }

  async function refresh() {
    // the job after its points: the summary's progress never runs behind the front's "N completed"
    const [points, history] = await Promise.all([
      MF.getJson(`/v1/jobs/${jobId}/points`), MF.getJson(`/v1/jobs/${jobId}/hypervolume`)]);
    const job = await MF.getJson(`/v1/jobs/${jobId}`);
    job.n_completed = Math.max(job.n_completed, points.n_completed);
    summary(job);
    MF.decide.weightInputs(job.objectives);
    const key = `${job.state}:${job.n_completed}:${job.n_failed}`;
    if (key !== seen) {
      MF.view.points = points;
      await MF.table.load();
      await MF.plots.front();
      await MF.plots.hypervolume(history);
      setTimeout(MF.guard(() => MF.plots.parcoords()), 20);
      // the surrogates are refitted when the job is done, or every 8 new evaluations while it runs
      if (points.n_completed >= 3 && (MF.isDone(job) || sensitivityAt === null || points.n_completed >= sensitivityAt + 8)) {
        sensitivityAt = points.n_completed;
        setTimeout(MF.guard(MF.decide.importance), 50);
      }
      seen = key;
    }
    showError("");
    document.body.dataset.jobState = job.state;
    document.body.dataset.loaded = key;
    if (!document.body.dataset.openedMs) document.body.dataset.openedMs = performance.now().toFixed(0);
    return job;
  }

  function missing() {
    document.body.dataset.missing = "1";
    document.getElementById("summary").replaceChildren(MF.el("h1", {}, `No job #${jobId}`),
      MF.el("p", { id: "missing" }, "This job does not exist (it may have been deleted). ",
        MF.el("a", { href: "/" }, "All jobs")));
    document.querySelectorAll("main > section.card, main > .panels").forEach((el) => { el.hidden = true; });
  }

  async function poll() {
    let job = null;
    try {
      job = await refresh();
    } catch (err) {
      if (err.status === 404) { showError(""); missing(); return; } // no more polling
      showError(err);
    }
    if (!job || !MF.isDone(job)) setTimeout(poll, 1500);
  }

  MF.onBrush = function (brush, quiet) {
    const before = MF.view.brushed;
    MF.view.brushed = brush.ids;
    const caption = document.getElementById("brush-caption");
    const gd = document.getElementById("parcoords");
    caption.textContent = brush.ids ? `${brush.ids.size} of ${gd.dataset.lines} evaluations inside the ranges.` : "";
    gd.dataset.brushed = brush.ids ? String(brush.ids.size) : "";
    document.getElementById("brush-clear").hidden = !brush.ids;
    if (quiet && !before && !brush.ids) return;
    MF.guard(() => Promise.all([MF.plots.front(), MF.table.setBrush(brush.ranges)]))();
  };

  document.getElementById("brush-clear").addEventListener("click", MF.guard(MF.plots.clearBrush));
  MF.table.init(jobId);
  MF.decide.init(jobId);
  poll();
})();
