// The job page: summary, front, hypervolume, table; polls while the job runs so new evaluations appear live.
"use strict";

(function () {
  const jobId = Number(location.pathname.split("/").filter(Boolean).pop());
  let seen = null;

  function showError(err) {
    const box = document.getElementById("error");
    box.textContent = String(err);
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
      MF.el("h1", {}, job.name, MF.el("span", { class: "muted" }, ` #${job.id}`)),
      MF.el("div", { class: "items" },
        item("state", MF.stateBadge(job.state), MF.isDone(job) ? "" : MF.el("span", { class: "live" }, "● live")),
        item("progress", MF.progress(job)),
        item("optimizer", job.optimizer),
        item("hypervolume", MF.el("span", { id: "job-hv" }, MF.fmt(job.hypervolume, 6)),
          MF.el("span", { class: "muted" }, ` (reference point ${MF.refPoint(job.reference_point)})`)),
        item("objectives", job.objectives.map((o, k) => `${o} (${job.maximize[k] ? "max" : "min"})`).join(", ")),
        item("created", MF.age(job.created_at))),
      ...(job.error ? [MF.el("pre", { class: "error" }, job.error)] : []));
  }

  async function refresh() {
    const job = await MF.getJson(`/v1/jobs/${jobId}`);
    summary(job);
    const key = `${job.state}:${job.n_completed}:${job.n_failed}`;
    if (key !== seen) {
      // all requests at once; then the cheap table first, the plots after it
      const table = MF.table.load();
      const [points, history] = await Promise.all([
        MF.getJson(`/v1/jobs/${jobId}/points`), MF.getJson(`/v1/jobs/${jobId}/hypervolume`)]);
      await table;
      await MF.plots.front(points);
      await MF.plots.hypervolume(history);
      setTimeout(MF.guard(() => MF.plots.parcoords(points)), 20);
      seen = key;
    }
    showError("");
    document.body.dataset.jobState = job.state;
    document.body.dataset.loaded = key;
    if (!document.body.dataset.openedMs) document.body.dataset.openedMs = performance.now().toFixed(0);
    return job;
  }

  async function poll() {
    let job = null;
    try { job = await refresh(); } catch (err) { showError(err); }
    if (!job || !MF.isDone(job)) setTimeout(poll, 1500);
  }

  MF.table.init(jobId);
  poll();
})();
