// The job page's plots: the front (scatter for two objectives, scatter matrix for more) with the surrogate's
// predicted front beside it, parallel coordinates of objectives and parameters that brush, and the hypervolume
// history. Points carry their evaluation id as customdata; a click calls MF.onPick(id).
"use strict";

// What every view shares: the latest points, the brushed ids (null: no brush), the recommended and compared ids.
MF.view = { points: null, predicted: null, brushed: null, recommended: null, compare: [] };

MF.plots = (function () {
  // plotly.js (about 5 MB, served from the local `plotly` package) loads while the page fetches its data
  const ready = new Promise((resolve, reject) => {
    const script = MF.el("script", { src: "/vendor/plotly.min.js", async: true });
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => reject(new Error("could not load /vendor/plotly.min.js"));
    document.head.append(script);
  });
  const FRONT = "#d62728";
  const DOMINATED = "#7f8c9a";
  const PREDICTED = "#1f77b4";
  // the toolbar shows on hover only, above the plot's own margin: it never covers axis labels
  const CONFIG = { responsive: true, displaylogo: false, displayModeBar: "hover",
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d", "toggleSpikelines"] };
  const short = (key) => key.replace(/_accuracy$/, "");

  // Hover text of point i: its number, every objective and every parameter, with their values.
  function hoverText(points, i) {
    const lines = [`<b>evaluation #${points.numbers[i]}</b>${points.on_front[i] ? " (on the front)" : ""}`];
    const n = points.counts && points.counts[i] > 1 ? points.counts[i] : 1;
    if (n > 1) lines.push(`mean of ${n} evaluations (new mask seeds) ± standard deviation`);
    points.objectives.forEach((key, k) => lines.push(`${key}: ${points.values[k][i].toFixed(4)}`
      + (n > 1 ? ` ± ${points.spread[k][i].toFixed(4)}` : "")));
    (points.parameters || []).forEach((key, j) => lines.push(`<span style="color:#6b7685">${key}: `
      + `${points.params[j][i].toFixed(3)}</span>`));
    return lines.join("<br>");
  }

  // The caption's note on points evaluated more than once (optimizer.reevaluate): they are shown at their means.
  function repeatedText(points) {
    const again = (points.counts || []).filter((c) => c > 1).length;
    return again ? `; ${again} evaluated more than once, shown at their mean (hover: ± standard deviation)` : "";
  }

  function predictedText(predicted, i, objectives) {
    const lines = ["<b>predicted by the surrogate</b> (not evaluated)"];
    objectives.forEach((key, k) => lines.push(`${key}: ${predicted.values[k][i].toFixed(4)}`));
    Object.entries(predicted.params[i] || {}).forEach(([key, v]) => lines.push(
      `<span style="color:#6b7685">${key}: ${v.toFixed(3)}</span>`));
    return lines.join("<br>");
  }

  // Per-point marker arrays from the shared view: brushed points stand out, the recommended point is a star,
  // compared points are diamonds with a dark ring.
  function markers(points) {
    const v = MF.view;
    const n = points.ids.length;
    const out = { color: [], size: [], opacity: [], symbol: [], line: { color: "#1d2430", width: [] } };
    for (let i = 0; i < n; i++) {
      const id = points.ids[i];
      const onFront = points.on_front[i];
      const inside = !v.brushed || v.brushed.has(id);
      const compared = v.compare.includes(id);
      const recommended = v.recommended === id;
      out.color.push(onFront ? FRONT : DOMINATED);
      out.size.push(recommended ? 18 : compared ? 13 : onFront ? 9 : 6);
      out.opacity.push(!inside ? 0.08 : onFront || recommended || compared ? 0.95 : 0.45);
      out.symbol.push(recommended ? "star" : compared ? "diamond" : "circle");
      out.line.width.push(recommended || compared ? 2 : 0);
    }
    return out;
  }

  function scatter2d(gd, points, predicted) {
    const idx = points.ids.map((_, i) => i);
    const front = idx.filter((i) => points.on_front[i]).sort((a, b) => points.values[0][a] - points.values[0][b]);
    const data = [
      { type: "scatter", mode: "markers", name: "evaluations", x: points.values[0], y: points.values[1],
        customdata: points.ids, text: idx.map((i) => hoverText(points, i)), hovertemplate: "%{text}<extra></extra>",
        marker: markers(points), showlegend: false },
      { type: "scatter", mode: "lines", name: "Pareto front (evaluated)", x: front.map((i) => points.values[0][i]),
        y: front.map((i) => points.values[1][i]), line: { color: FRONT, width: 1 }, hoverinfo: "skip" },
    ];
    if (predicted && predicted.values.length) {
      const order = predicted.values[0].map((_, i) => i).sort((a, b) => predicted.values[0][a] - predicted.values[0][b]);
      data.push({ type: "scatter", mode: "markers", name: "predicted front (surrogate)",
        x: order.map((i) => predicted.values[0][i]), y: order.map((i) => predicted.values[1][i]),
        text: order.map((i) => predictedText(predicted, i, points.objectives)), hovertemplate: "%{text}<extra></extra>",
        marker: { color: PREDICTED, symbol: "diamond-open", size: 8, opacity: 0.8 } });
    }
    const layout = { margin: { t: 30, r: 10, b: 45, l: 60 }, hovermode: "closest", hoverlabel: { align: "left" },
      xaxis: { title: { text: points.objectives[0] } }, yaxis: { title: { text: points.objectives[1] } },
      legend: { orientation: "h", x: 0, y: 1.08 }, uirevision: "front" };
    return Plotly.react(gd, data, layout, CONFIG);
  }

  function scatter1d(gd, points) {
    const idx = points.ids.map((_, i) => i);
    const data = [{ type: "scatter", mode: "markers", x: points.numbers, y: points.values[0],
      customdata: points.ids, text: idx.map((i) => hoverText(points, i)), hovertemplate: "%{text}<extra></extra>",
      marker: markers(points) }];
    const layout = { margin: { t: 10 }, xaxis: { title: { text: "evaluation" } }, hoverlabel: { align: "left" },
      yaxis: { title: { text: points.objectives[0] } }, uirevision: "front" };
    return Plotly.react(gd, data, layout, CONFIG);
  }

  function splom(gd, points, predicted) {
    const idx = points.ids.map((_, i) => i);
    const data = [{
      type: "splom", name: "evaluations",
      dimensions: points.objectives.map((key, k) => ({ label: short(key), values: points.values[k] })),
      customdata: points.ids, text: idx.map((i) => hoverText(points, i)), marker: markers(points),
      diagonal: { visible: false }, showupperhalf: false, hovertemplate: "%{text}<extra></extra>",
    }];
    if (predicted && predicted.values.length) {
      data.push({ type: "splom", name: "predicted front (surrogate)",
        dimensions: points.objectives.map((key, k) => ({ label: short(key), values: predicted.values[k] })),
        text: predicted.values[0].map((_, i) => predictedText(predicted, i, points.objectives)),
        marker: { color: PREDICTED, symbol: "diamond-open", size: 7, opacity: 0.8 },
        diagonal: { visible: false }, showupperhalf: false, hovertemplate: "%{text}<extra></extra>" });
    }
    const m = points.objectives.length;
    const layout = { margin: { t: 30, r: 10, b: 40, l: 50 }, height: Math.max(420, 150 * (m - 1)),
      hovermode: "closest", hoverlabel: { align: "left" }, dragmode: "zoom", uirevision: "front",
      showlegend: Boolean(predicted && predicted.values.length), legend: { orientation: "h", x: 0, y: 1.06 } };
    return Plotly.react(gd, data, layout, CONFIG);
  }

  async function front() {
    const points = MF.view.points;
    if (!points) return;
    await ready;
    const gd = document.getElementById("front");
    const m = points.objectives.length;
    const predicted = MF.view.predicted;
    if (m >= 3) await splom(gd, points, predicted);
    else if (m === 2) await scatter2d(gd, points, predicted);
    else await scatter1d(gd, points);
    if (!gd.dataset.clickBound) {
      gd.on("plotly_click", (event) => {
        const p = event.points && event.points[0];
        if (p && p.customdata !== undefined && p.data.name === "evaluations") MF.onPick(p.customdata);
      });
      gd.dataset.clickBound = "1";
    }
    const shown = points.ids.length;
    const brushed = MF.view.brushed ? `; ${MF.view.brushed.size} inside the brushed ranges` : "";
    const pred = predicted && predicted.values.length ? `; ${predicted.values[0].length} predicted` : "";
    document.getElementById("front-caption").textContent =
      `${points.n_front} on the front of ${points.n_completed} completed` +
      (points.n_dominated_shown < points.n_dominated ? ` (showing ${shown}: dominated points thinned)` : "") +
      repeatedText(points) +
      brushed + pred;
    gd.dataset.points = String(shown);
  }

  // Parallel coordinates: one axis per objective, then one per parameter; a line per shown point (front members
  // first, then dominated ones, at most MAX_LINES), red on the front. Brushing an axis calls MF.onBrush.
  const MAX_LINES = 1500;
  let lineIds = [];
  let dims = [];

  // WebGL, and slow to start where WebGL is emulated: job.js draws it after the rest of the page.
  async function parcoords() {
    const points = MF.view.points;
    if (!points || !points.ids.length) return;
    await ready;
    const gd = document.getElementById("parcoords");
    const order = points.ids.map((_, i) => i).sort((a, b) => points.on_front[b] - points.on_front[a]);
    const lines = order.slice(0, MAX_LINES);
    lineIds = lines.map((i) => points.ids[i]);
    const old = gd.data && gd.data[0] ? gd.data[0].dimensions : [];
    dims = [...points.objectives.map((key, k) => ({ column: key, label: short(key), values: points.values[k] })),
      ...(points.parameters || []).map((key, j) => ({ column: key, label: key, values: points.params[j] }))];
    const data = [{
      type: "parcoords", labelangle: -20, labelside: "top",
      line: { color: lines.map((i) => (points.on_front[i] ? 1 : 0)), cmin: 0, cmax: 1, showscale: false,
        colorscale: [[0, "#b7c0cc"], [1, FRONT]] },
      dimensions: dims.map((d, k) => ({ label: d.label, values: lines.map((i) => d.values[i]),
        ...(old[k] && old[k].label === d.label && old[k].constraintrange ? { constraintrange: old[k].constraintrange }
          : {}) })),
    }];
    gd.dataset.lines = String(lines.length);
    document.getElementById("parcoords-caption").textContent =
      `${dims.length} axes, ${lines.length} evaluations (red: on the front)` +
      (lines.length < points.ids.length ? `, of ${points.ids.length} shown on the front plot` : "");
    // labels sit above the axes, inside the top margin; no toolbar over them
    await Plotly.react(gd, data, { margin: { t: 70, r: 50, b: 25, l: 50 }, height: 430 },
      { ...CONFIG, displayModeBar: false });
    if (!gd.dataset.brushBound) {
      gd.on("plotly_restyle", () => MF.onBrush(brushOf(gd)));
      gd.dataset.brushBound = "1";
    }
    gd.dataset.drawn = String(points.n_completed);
    if (!gd.dataset.drawnMs) gd.dataset.drawnMs = performance.now().toFixed(0);
    MF.onBrush(brushOf(gd), true);
  }

  // The brushed ranges ([{column, ranges}]) and the ids of the lines inside all of them (null: no brush).
  function brushOf(gd) {
    const ranges = [];
    (gd.data[0].dimensions || []).forEach((d, k) => {
      let r = d.constraintrange;
      if (!r || !r.length || !dims[k]) return;
      if (!Array.isArray(r[0])) r = [r];
      ranges.push({ k, column: dims[k].column, ranges: r.map(([a, b]) => [Math.min(a, b), Math.max(a, b)]) });
    });
    if (!ranges.length) return { ranges, ids: null };
    const values = gd.data[0].dimensions;
    const ids = new Set(lineIds.filter((_, i) => ranges.every(({ k, ranges: rs }) =>
      rs.some(([lo, hi]) => values[k].values[i] >= lo && values[k].values[i] <= hi))));
    return { ranges, ids };
  }

  async function clearBrush() {
    const gd = document.getElementById("parcoords");
    const update = {};
    (gd.data[0].dimensions || []).forEach((_, k) => { update[`dimensions[${k}].constraintrange`] = null; });
    await Plotly.restyle(gd, update, [0]);
  }

  async function hypervolume(history) {
    await ready;
    const gd = document.getElementById("hv");
    const data = [{ type: "scatter", mode: "lines+markers", line: { shape: "hv", color: "#1f77b4" },
      marker: { size: 4 }, x: history.points.map((p) => p.n_completed), y: history.points.map((p) => p.hypervolume),
      hovertemplate: "%{x} completed<br>hypervolume %{y:.6f}<extra></extra>" }];
    const layout = { margin: { t: 10, r: 10, b: 45, l: 70 }, xaxis: { title: { text: "completed evaluations" } },
      yaxis: { title: { text: `hypervolume (reference ${MF.refPoint(history.reference_point)})` } },
      uirevision: "hv" };
    return Plotly.react(gd, data, layout, CONFIG);
  }

  return { front, parcoords, hypervolume, clearBrush, ready };
})();
