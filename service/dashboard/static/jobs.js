// The jobs page: every job with state, progress, optimizer, best hypervolume and age; refreshes while any runs.
"use strict";

(function () {
  const PAGE = 50;
  let offset = 0;
  let timer = null;

  function row(job) {
    return MF.el("tr", { class: "job-row", dataset: { jobId: job.id } },
      MF.el("td", {}, MF.el("a", { href: `/jobs/${job.id}` }, `#${job.id}`)),
      MF.el("td", {}, MF.el("a", { href: `/jobs/${job.id}` }, job.name)),
      MF.el("td", {}, MF.stateBadge(job.state)),
      MF.el("td", {}, MF.progress(job)),
      MF.el("td", {}, job.optimizer),
      MF.el("td", { class: "num" }, MF.fmt(job.hypervolume, 6),
        MF.el("div", { class: "muted" }, `ref ${MF.refPoint(job.reference_point)}`)),
      MF.el("td", { class: "num" }, job.objectives.length),
      MF.el("td", { title: job.created_at }, MF.age(job.created_at)));
  }

  async function load() {
    clearTimeout(timer);
    try {
      const page = await MF.getJson(`/v1/jobs?offset=${offset}&limit=${PAGE}`);
      const body = document.getElementById("jobs-body");
      body.replaceChildren(...page.items.map(row));
      document.getElementById("empty").hidden = page.total > 0;
      document.getElementById("jobs-count").textContent =
        page.total ? `${offset + 1}–${offset + page.items.length} of ${page.total} jobs` : "";
      document.getElementById("prev").disabled = offset === 0;
      document.getElementById("next").disabled = offset + PAGE >= page.total;
      document.getElementById("error").hidden = true;
      if (page.items.some((job) => !MF.isDone(job))) timer = setTimeout(load, 2000);
    } catch (err) {
      const box = document.getElementById("error");
      box.textContent = String(err);
      box.hidden = false;
      timer = setTimeout(load, 5000);
    }
  }

  document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  document.getElementById("next").addEventListener("click", () => { offset += PAGE; load(); });
  load();
})();
