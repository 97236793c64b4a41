// The selected point: its configuration, metrics, timings and its mergekit export (when the server offers one).
"use strict";

MF.details = (function () {
  let current = null;

  function pairs(title, obj, cls) {
    const rows = Object.entries(obj || {}).map(([key, value]) =>
      MF.el("tr", {}, MF.el("th", {}, key), MF.el("td", { class: "num" }, MF.fmt(value))));
    return [MF.el("h3", {}, title), MF.el("table", { class: `kv ${cls}` }, MF.el("tbody", {}, rows))];
  }

  async function exportBlock(ev) {
    const url = `/v1/evaluations/${ev.id}/export/mergekit`;
    const box = MF.el("div", { class: "export" }, MF.el("h3", {}, "mergekit export"));
    try {
      const response = await MF.fetch(url);
      if (!response.ok) throw new Error(String(response.status));
      const text = await response.text();
      const save = (event, href, name) => { event.preventDefault(); MF.download(href, name).catch(() => {}); };
      const yamlName = `job${ev.job_id}-eval${ev.number}-mergekit.yaml`;
      const zip = `/v1/evaluations/${ev.id}/export/checkpoint.zip`;
      box.append(MF.el("pre", { class: "yaml", id: "export-yaml" }, text),
        MF.el("a", { id: "export-download", href: url, download: yamlName,
          onclick: (event) => save(event, url, yamlName) }, "download YAML"), " · ",
        MF.el("a", { id: "export-checkpoint", href: zip,
          onclick: (event) => save(event, zip, `mergefront-evaluation-${ev.id}.zip`) },
        "download merged checkpoint (zip)"));
    } catch (_) {
      box.append(MF.el("p", { class: "muted", id: "export-missing" }, "export not available"));
    }
    return box;
  }

  // A point evaluated more than once (optimizer.reevaluate): the mean and spread the front places it at.
  function evidence(ev) {
    const points = MF.view.points;
    const i = points ? points.ids.indexOf(ev.id) : -1;
    if (i < 0 || !points.counts || points.counts[i] < 2) return [];
    const rows = {};
    points.objectives.forEach((key, k) => {
      rows[key] = `${MF.fmt(points.values[k][i])} ± ${MF.fmt(points.spread[k][i])}`;
    });
    return pairs(`mean ± std of its ${points.counts[i]} evaluations (new mask seeds)`, rows, "evidence");
  }

  async function show(id) {
    current = id;
    const card = document.getElementById("details-card");
    const target = document.getElementById("details");
    if (card.hidden) {
      card.hidden = false;
      document.getElementById("panels").classList.add("has-pick");
      window.dispatchEvent(new Event("resize")); // the front plot gives the card its width
    }
    let ev;
    try { ev = await MF.getJson(`/v1/evaluations/${id}`); } catch (err) {
      target.replaceChildren(MF.el("p", { class: "error" }, String(err.message)));
      return;
    }
    if (current !== id) return;
    const timings = { "merge": MF.seconds(ev.merge_seconds), "evaluate": MF.seconds(ev.eval_seconds),
      "worker": ev.worker || "–", "node": ev.node ? `${ev.node} (${ev.node_id.slice(0, 8)})` : "–",
      "attempts": ev.attempts, "started": MF.time(ev.started_at), "finished": MF.time(ev.finished_at) };
    const compared = MF.view.compare.includes(ev.id);
    target.replaceChildren(...[
      MF.el("p", { class: "picked", id: "picked", dataset: { evaluationId: ev.id } },
        MF.el("strong", {}, `Evaluation #${ev.number}`), " ", MF.stateBadge(ev.state),
        MF.el("span", { class: "muted" }, ` id ${ev.id}`), " ",
        MF.el("button", { type: "button", id: "details-compare", disabled: compared || MF.view.compare.length >= 4,
          onclick: () => { MF.decide.addCompare(ev.id, ev.number); } }, compared ? "in compare" : "compare")),
      ev.error ? MF.el("pre", { class: "error" }, ev.error) : null,
      ...pairs("metrics", ev.metrics, "metrics"), ...evidence(ev), ...pairs("configuration", ev.params, "params"),
      ...pairs("timings", timings, "timings")].filter(Boolean));
    const block = await exportBlock(ev);
    if (current === id) target.append(block);
  }

  function close() {
    current = null;
    document.getElementById("details-card").hidden = true;
    document.getElementById("panels").classList.remove("has-pick");
    window.dispatchEvent(new Event("resize"));
  }

  document.getElementById("details-close").addEventListener("click", close);
  return { show, close };
})();

MF.onPick = (id) => MF.details.show(id);
