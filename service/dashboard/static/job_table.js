// The evaluation table: sorted, filtered and paginated on the server (GET /v1/jobs/{id}/table). Its filters are
// the typed ones and the brushed ranges of the parallel coordinates; downloads take the same query.
"use strict";

MF.table = (function () {
  const PAGE = 25;
  const state = { jobId: null, sort: "number", descending: false, offset: 0, query: {}, brush: [] };

  function label(column) {
    return MF.typed(column).replace(/_seconds$/, " s").replace(/_at$/, "");
  }

  // A header may wrap after "." and "_" ("weight.<wbr>rotated", "rotated_<wbr>accuracy"), so the objective and
  // parameter columns are as narrow as their numbers and the table fits the page without scrolling sideways.
  function breakable(text) {
    return text.split(/(?<=[._])/).flatMap((part, i) => (i ? [MF.el("wbr"), part] : [part]));
  }

  function header(columns) {
    const cells = columns.map((column) => {
      const arrow = column === state.sort ? (state.descending ? " ▼" : " ▲") : "";
      return MF.el("th", { class: "sortable", dataset: { column },
        title: `sort by ${MF.typed(column)} (filter it as: ${MF.typed(column)} >= ...)`,
        onclick: () => sortBy(column) }, breakable(label(column) + arrow));
    });
    return MF.el("tr", {}, MF.el("th", { title: "on the latest Pareto front" }, "front"), cells);
  }

  function cell(row, column) {
    if (column.startsWith("metrics.")) return row.metrics ? row.metrics[column.slice(8)] : null;
    if (column.startsWith("params.")) return row.params[column.slice(7)];
    return row[column];
  }

  function pick(id) {
    MF.onPick(id);
    document.getElementById("details-card").scrollIntoView({ block: "nearest" });
  }

  function body(rows, columns) {
    return rows.map((row) => MF.el("tr", { class: `eval-row${row.on_front ? " on-front" : ""}`,
      dataset: { evaluationId: row.id }, onclick: () => pick(row.id) },
    MF.el("td", {}, row.on_front ? "★" : ""),
    columns.map((column) => {
      const value = cell(row, column);
      if (column === "state") return MF.el("td", {}, MF.stateBadge(value));
      if (column.endsWith("_at")) return MF.el("td", { title: MF.time(value) }, MF.age(value));
      return MF.el("td", { class: "num" }, MF.fmt(value, column.startsWith("params.") ? 3 : 4));
    })));
  }

  function visible(columns) {
    return columns.filter((c) => !["created_at", "attempts", "started_at"].includes(c));
  }

  // `column >= lo` and `column <= hi` of each brushed axis (its ranges' hull when it has several).
  function brushFilters() {
    return state.brush.flatMap(({ column, ranges }) => {
      const lo = Math.min(...ranges.map((r) => r[0]));
      const hi = Math.max(...ranges.map((r) => r[1]));
      return [`${column} >= ${lo}`, `${column} <= ${hi}`];
    });
  }

  function query() {
    const params = new URLSearchParams({ sort: state.sort, descending: state.descending });
    if (state.query.state) params.set("state", state.query.state);
    if (state.query.front) params.set("front", "true");
    for (const f of [...(state.query.filters || []), ...brushFilters()]) params.append("filter", f);
    return params;
  }

  function showFilterError(text) {
    const box = document.getElementById("filter-error");
    box.textContent = text ? `This filter cannot be used: ${text.replace(/^filter: /, "")}` : "";
    box.hidden = !text;
  }

  async function load() {
    const params = query();
    params.set("offset", state.offset);
    params.set("limit", PAGE);
    let page;
    try {
      page = await MF.getJson(`/v1/jobs/${state.jobId}/table?${params}`);
    } catch (err) {
      if (err.status === 422) { showFilterError(err.message); return; }
      throw err;
    }
    showFilterError("");
    const columns = visible(page.columns);
    const table = document.getElementById("evaluations");
    table.tHead.replaceChildren(header(columns));
    table.tBodies[0].replaceChildren(...body(page.items, columns));
    table.dataset.total = String(page.total);
    document.getElementById("table-count").textContent = page.total
      ? `${page.offset + 1}–${page.offset + page.items.length} of ${page.total}` : "no evaluations match";
    document.getElementById("table-prev").disabled = state.offset === 0;
    document.getElementById("table-next").disabled = state.offset + PAGE >= page.total;
    document.getElementById("table-brush").textContent = state.brush.length
      ? `(brushed: ${state.brush.map((b) => MF.typed(b.column)).join(", ")})` : "";
  }

  function sortBy(column) {
    state.descending = column === state.sort ? !state.descending : column.startsWith("metrics.");
    state.sort = column;
    state.offset = 0;
    MF.guard(load)();
  }

  function readForm(form) {
    const data = new FormData(form);
    const filters = String(data.get("filter") || "").split(",").map((s) => s.trim()).filter(Boolean);
    state.query = { state: data.get("state"), front: data.get("front") === "on", filters };
    state.offset = 0;
  }

  function setBrush(ranges) {
    state.brush = ranges;
    state.offset = 0;
    return load();
  }

  function download(fmt) {
    return (event) => {
      event.preventDefault();
      MF.download(`/v1/jobs/${state.jobId}/evaluations.${fmt}?${query()}`,
        `mergefront-job${state.jobId}-evaluations.${fmt}`).catch((err) => showFilterError(err.message));
    };
  }

  function init(jobId) {
    state.jobId = jobId;
    const form = document.getElementById("table-filters");
    form.addEventListener("submit", (event) => { event.preventDefault(); readForm(form); MF.guard(load)(); });
    document.getElementById("table-prev").addEventListener("click",
      () => { state.offset = Math.max(0, state.offset - PAGE); MF.guard(load)(); });
    document.getElementById("table-next").addEventListener("click",
      () => { state.offset += PAGE; MF.guard(load)(); });
    document.getElementById("download-csv").addEventListener("click", download("csv"));
    document.getElementById("download-parquet").addEventListener("click", download("parquet"));
  }

  return { init, load, setBrush };
})();
