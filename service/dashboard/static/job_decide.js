// Deciding on a job's front: constraints typed as text and a weight per objective rank the front and recommend
// a point (GET /v1/jobs/{id}/rank); 2 to 4 points side by side (GET /v1/jobs/{id}/compare); each parameter's
// importance per objective from the job's surrogates, with their held-out R² (GET /v1/jobs/{id}/sensitivity).
"use strict";

MF.decide = (function () {
  let jobId = null;
  let objectives = [];
  const numbers = new Map(); // evaluation id -> number, for the compare chips

  function showError(id, text) {
    const box = document.getElementById(id);
    box.textContent = text || "";
    box.hidden = !text;
  }

  function weightInputs(names) {
    if (names.join() === objectives.join()) return;
    objectives = names;
    document.getElementById("weights").replaceChildren(MF.el("span", { class: "muted" }, "weights"),
      ...names.map((key) => MF.el("label", {}, `${key} `, MF.el("input", { type: "number", name: `weight:${key}`,
        class: "weight", dataset: { objective: key }, value: "1", min: "0", max: "1000", step: "any" }))));
  }

  async function rank() {
    const form = document.getElementById("decide-form");
    const params = new URLSearchParams({ limit: 20 });
    const text = form.elements.constraints.value;
    text.split(",").map((s) => s.trim()).filter(Boolean).forEach((c) => params.append("constraint", c));
    form.querySelectorAll("input.weight").forEach((input) => {
      params.append("weight", `${input.dataset.objective}=${input.value === "" ? "1" : input.value}`);
    });
    let ranking;
    try {
      ranking = await MF.getJson(`/v1/jobs/${jobId}/rank?${params}`);
    } catch (err) {
      if (err.status === 422) { showError("decide-error", `Cannot rank: ${err.message.replace(/^(constraint|weight): /, "")}`); return; }
      throw err;
    }
    showError("decide-error", "");
    render(ranking);
  }

  function render(ranking) {
    const rec = ranking.recommended;
    MF.view.recommended = rec ? rec.id : null;
    MF.plots.front();
    const box = document.getElementById("recommended");
    box.dataset.evaluationId = rec ? String(rec.id) : "";
    if (!rec) {
      box.replaceChildren(MF.el("p", { class: "muted", id: "no-feasible" },
        `No front member meets every constraint (${ranking.n_front} on the front).`));
      document.getElementById("ranking").replaceChildren();
      return;
    }
    const metrics = ranking.objectives.map((k) => `${k} ${MF.fmt(rec.metrics[k])}`).join(", ");
    const tie = ranking.tied > 1 ? ` ${ranking.tied} members tie on the top score; ${ranking.rule}.` : "";
    box.replaceChildren(MF.el("p", { class: "recommended", id: "recommended-text" },
      "Recommended: ", MF.el("strong", {}, `evaluation #${rec.number}`), ` (score ${ranking.items[0].score.toFixed(3)}; `,
      `${ranking.n_feasible} of ${ranking.n_front} front members meet the constraints). ${metrics}.${tie} `,
      MF.el("button", { type: "button", onclick: () => MF.onPick(rec.id) }, "show")));
    const head = MF.el("tr", {}, MF.el("th", {}, "rank"), MF.el("th", {}, "score"), MF.el("th", {}, "#"),
      ranking.objectives.map((k) => MF.el("th", {}, k)), MF.el("th", {}, "compare"));
    const rows = ranking.items.map((item) => {
      const ev = item.evaluation;
      numbers.set(ev.id, ev.number);
      return MF.el("tr", { class: "rank-row", dataset: { evaluationId: ev.id } },
        MF.el("td", {}, item.rank), MF.el("td", { class: "num" }, item.score.toFixed(3)),
        MF.el("td", {}, MF.el("a", { href: "#", onclick: (e) => { e.preventDefault(); MF.onPick(ev.id); } },
          `#${ev.number}`)),
        ranking.objectives.map((k) => MF.el("td", { class: "num" }, MF.fmt(ev.metrics[k]))),
        MF.el("td", {}, MF.el("input", { type: "checkbox", class: "compare-box", checked: MF.view.compare.includes(ev.id),
          onchange: (e) => (e.target.checked ? addCompare(ev.id, ev.number) : removeCompare(ev.id)) })));
    });
    document.getElementById("ranking").replaceChildren(MF.el("table", { class: "grid compact", id: "ranking-table" },
      MF.el("thead", {}, head), MF.el("tbody", {}, rows)));
  }

  // --- compare ---
  function picks() {
    const chips = MF.view.compare.map((id) => MF.el("span", { class: "chip", dataset: { evaluationId: id } },
      `#${numbers.get(id) ?? id}`, MF.el("button", { type: "button", class: "link", title: "remove",
        onclick: () => removeCompare(id) }, "×")));
    document.getElementById("compare-picks").replaceChildren(...chips);
    const n = MF.view.compare.length;
    const run = document.getElementById("compare-run");
    run.disabled = n < 2 || n > 4;
    run.textContent = n < 2 ? `compare (choose ${2 - n} more)` : `compare ${n} points`;
    document.querySelectorAll("input.compare-box").forEach((box) => {
      const id = Number(box.closest("tr").dataset.evaluationId);
      box.checked = MF.view.compare.includes(id);
      box.disabled = !box.checked && n >= 4;
    });
    MF.plots.front();
  }

  function addCompare(id, number) {
    if (number !== undefined) numbers.set(id, number);
    if (!MF.view.compare.includes(id) && MF.view.compare.length < 4) MF.view.compare.push(id);
    picks();
  }

  function removeCompare(id) {
    MF.view.compare = MF.view.compare.filter((x) => x !== id);
    picks();
  }

  function diffBlock(text) {
    return MF.el("pre", { class: "diff" }, text.split("\n").map((line) => MF.el("span", {
      class: line.startsWith("+") && !line.startsWith("+++") ? "add"
        : line.startsWith("-") && !line.startsWith("---") ? "del" : "" }, `${line}\n`)));
  }

  async function compare() {
    const params = new URLSearchParams();
    MF.view.compare.forEach((id) => params.append("id", id));
    let out;
    try {
      out = await MF.getJson(`/v1/jobs/${jobId}/compare?${params}`);
    } catch (err) {
      if (err.status === 422 || err.status === 404) { showError("compare-error", err.message); return; }
      throw err;
    }
    showError("compare-error", "");
    const items = out.items;
    const head = MF.el("tr", {}, MF.el("th", {}, ""), items.map((ev) => MF.el("th", {}, `#${ev.number}`)));
    const row = (name, values, digits, best) => {
      const nums = values.map((v) => (typeof v === "number" ? v : null));
      const same = nums.every((v) => v === nums[0]);
      const top = best === undefined ? null : (best ? Math.max : Math.min)(...nums.filter((v) => v !== null));
      return MF.el("tr", { class: same ? "same" : "differs" }, MF.el("th", {}, name),
        values.map((v) => MF.el("td", { class: `num${top !== null && v === top ? " best" : ""}` }, MF.fmt(v, digits))));
    };
    const job = MF.view.points;
    const metricRows = (job ? job.objectives : Object.keys(items[0].metrics || {})).map((k, i) =>
      row(k, items.map((ev) => (ev.metrics || {})[k]), 4, job ? job.maximize[i] : undefined));
    const paramNames = [...new Set(items.flatMap((ev) => Object.keys(ev.params)))];
    const paramRows = paramNames.map((k) => row(k, items.map((ev) => ev.params[k]), 3));
    const diffs = out.diffs.map((d, i) => [MF.el("h3", {}, `mergekit YAML: #${items[0].number} → #${items[i + 1].number}`),
      d ? diffBlock(d) : MF.el("p", { class: "muted" }, "the same YAML")]);
    document.getElementById("compare").replaceChildren(
      MF.el("table", { class: "grid compact", id: "compare-table" }, MF.el("thead", {}, head),
        MF.el("tbody", {}, MF.el("tr", { class: "section" }, MF.el("th", { colspan: items.length + 1 }, "metrics")),
          metricRows, MF.el("tr", { class: "section" }, MF.el("th", { colspan: items.length + 1 }, "parameters")),
          paramRows)),
      ...out.notes.map((n) => MF.el("p", { class: "muted" }, n)), ...diffs.flat());
  }

  // --- importance ---
  function trust(r2) {
    if (r2 === null || r2 === undefined) return ["no variation to fit", "bad"];
    if (r2 >= 0.7) return ["good fit", "good"];
    if (r2 >= 0.3) return ["rough fit: read the effects as hints", "rough"];
    return ["poor fit: do not trust these effects", "bad"];
  }

  async function importance() {
    const box = document.getElementById("importance");
    const caption = document.getElementById("importance-caption");
    caption.textContent = "(fitting…)";
    const out = await MF.getJson(`/v1/jobs/${jobId}/sensitivity`);
    caption.textContent = `(${out.note})`;
    MF.view.predicted = out.predicted_front;
    MF.plots.front();
    box.dataset.loaded = String(out.n_points);
    if (!out.objectives.length) { box.replaceChildren(MF.el("p", { class: "muted" }, out.note)); return; }
    box.replaceChildren(...out.objectives.map((o) => {
      const [words, cls] = trust(o.r2);
      const rows = o.parameters.map((p) => MF.el("tr", { dataset: { parameter: p.parameter } },
        MF.el("th", {}, p.parameter),
        MF.el("td", { class: "barcell" }, MF.el("span", { class: "bar", style: `width:${(100 * p.share).toFixed(1)}%` })),
        MF.el("td", { class: "num", title: "range of the main-effect curve, in the objective's units" },
          `±${p.effect.toFixed(4)}`),
        MF.el("td", { class: "num muted" }, `${(100 * p.share).toFixed(0)}%`)));
      return MF.el("div", { class: "objective-importance", dataset: { objective: o.objective } },
        MF.el("h3", {}, o.objective, " ", MF.el("span", { class: `r2 ${cls}`, title: "leave-one-out R² of the surrogate" },
          `held-out R² ${o.r2 === null ? "–" : o.r2.toFixed(2)}: ${words}`)),
        MF.el("table", { class: "kv importance-table" }, MF.el("tbody", {}, rows)));
    }));
  }

  function init(id) {
    jobId = id;
    document.getElementById("decide-form").addEventListener("submit", (event) => {
      event.preventDefault();
      MF.guard(rank)();
    });
    document.getElementById("compare-run").addEventListener("click", MF.guard(compare));
    document.getElementById("importance-refit").addEventListener("click", MF.guard(importance));
    picks();
  }

  return { init, weightInputs, rank, importance, addCompare, removeCompare };
})();
