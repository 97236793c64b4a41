// The job page: summary, front, parallel coordinates, decision views, hypervolume, table; polls while the job
// runs so new evaluations appear live, and stops for good when the job does not exist.
"use strict";

(function () {
  const jobId = Number(location.pathname.split("/").filter(Boolean).pop());
  let seen = null;
  let sensitivityAt = null;
  let gone = false; // deleted from this page: no more reads

  function showError(err) {
    const box = document.getElementById("error");
    box.textContent = err ? String(err.message || err) : "";
    box.hidden = !err;
  }

  MF.guard = (fn) => async (...args) => {
    try { await fn(...args); } catch (err) { showError(err); }
  };

  function summary(job) {
    document.title = `mergefront · ${job.name} (#${job.id})`;
    document.getElementById("crumb").textContent = `#${job.id} ${job.name}`;
    const item = (name, ...value) => MF.el("div", { class: "item" }, MF.el("span", { class: "label" }, name),
      MF.el("span", { class: "value" }, ...value));
    document.getElementById("summary").replaceChildren(
      MF.el("h1", { id: "job-name" }, job.name, MF.el("span", { class: "muted" }, ` #${job.id}`)),
      MF.el("div", { class: "items" },
        item("state", MF.stateBadge(job.state), MF.isDone(job) ? "" : MF.el("span", { class: "live" }, "● live")),
        item("progress", MF.progress(job)),
        item("optimizer", job.optimizer),
        item("hypervolume", MF.el("span", { id: "job-hv" }, MF.fmt(job.hypervolume, 6)),
          MF.el("span", { class: "muted" }, ` (reference point ${MF.refPoint(job.reference_point)})`)),
        item("objectives", job.objectives.map((o, k) => `${o} (${job.maximize[k] ? "max" : "min"})`).join(", ")),
        item("created", MF.el("span", { title: MF.time(job.created_at) }, MF.time(job.created_at))),
        job.notes ? MF.el("div", { class: "item notes" }, MF.el("span", { class: "label" }, "notes"),
          MF.el("span", { class: "value", id: "job-notes" }, job.notes)) : null),
      ...(job.error ? [MF.el("pre", { class: "error" }, job.error)] : []));
  }

  async function refresh() {
    // the job after its points: the summary's progress never runs behind the front's "N completed"
    const [points, history] = await Promise.all([
      MF.getJson(`/v1/jobs/${jobId}/points`), MF.getJson(`/v1/jobs/${jobId}/hypervolume`)]);
    const job = await MF.getJson(`/v1/jobs/${jobId}`);
    job.n_completed = Math.max(job.n_completed, points.n_completed);
    if (gone) return job;
    summary(job);
    MF.manage.update(job);
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

  // The job is not there (never was, or deleted elsewhere) or was deleted from this page: say so, stop polling.
  function missing(deleted) {
    gone = true;
    document.body.dataset.missing = "1";
    const text = deleted ? `Job #${jobId} "${deleted.name}" was deleted with its evaluations. `
      : "This job does not exist (it may have been deleted). ";
    document.getElementById("summary").replaceChildren(
      MF.el("h1", {}, deleted ? `Deleted job #${jobId}` : `No job #${jobId}`),
      MF.el("p", { id: "missing" }, text, MF.el("a", { href: "/" }, "All jobs")));
    document.getElementById("crumb").textContent = `#${jobId}`;
    MF.manage.hide();
    document.querySelectorAll("main > section.card, main > .panels").forEach((el) => { el.hidden = true; });
  }

  async function poll() {
    if (gone) return;
    let job = null;
    try {
      job = await refresh();
    } catch (err) {
      if (err.status === 404) { showError(""); missing(null); return; } // no more polling
      showError(err);
    }
    if (!gone && (!job || !MF.isDone(job))) setTimeout(poll, 1500);
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
  MF.manage.init(jobId, {
    changed: refresh, // a cancel changes the state, so the views redraw too
    deleted: (job) => missing(job || { name: "" }),
  });
  poll();
})();
