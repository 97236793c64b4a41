// The job page's plots: the front (scatter for two objectives, scatter matrix and parallel coordinates for more),
// and the hypervolume history. Points carry their evaluation id as customdata; a click calls MF.onPick(id).
"use strict";

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
  const CONFIG = { responsive: true, displaylogo: false };
  const short = (key) => key.replace(/_accuracy$/, "");

  function split(points) {
    const front = [], dominated = [];
    points.ids.forEach((_, i) => (points.on_front[i] ? front : dominated).push(i));
    return { front, dominated };
  }

  function pick(points, indices, k) { return indices.map((i) => points.values[k][i]); }

  function hover(points) {
    return points.objectives.map((key, k) => `${short(key)}: %{${k === 0 ? "x" : "y"}:.4f}`).join("<br>");
  }

  function scatter2d(gd, points) {
    const { front, dominated } = split(points);
    // the front drawn as a line in the order of its first objective
    front.sort((a, b) => points.values[0][a] - points.values[0][b]);
    const trace = (indices, name, extra) => ({
      type: "scatter", mode: "markers", name, x: pick(points, indices, 0), y: pick(points, indices, 1),
      customdata: indices.map((i) => points.ids[i]), text: indices.map((i) => `#${points.numbers[i]}`),
      hovertemplate: `%{text}<br>${hover(points)}<extra>${name}</extra>`, ...extra,
    });
    const data = [
      trace(dominated, "dominated", { marker: { color: DOMINATED, size: 7, opacity: 0.35 } }),
      trace(front, "Pareto front", { mode: "lines+markers", line: { color: FRONT, width: 1, shape: "linear" },
        marker: { color: FRONT, size: 10, line: { color: "#fff", width: 1 } } }),
    ];
    const layout = { margin: { t: 10, r: 10, b: 50, l: 60 }, hovermode: "closest", legend: { orientation: "h" },
      xaxis: { title: { text: points.objectives[0] } }, yaxis: { title: { text: points.objectives[1] } },
      uirevision: "front" };
    return Plotly.react(gd, data, layout, CONFIG);
  }

  function scatter1d(gd, points) {
    const data = [{ type: "scatter", mode: "markers", x: points.numbers, y: points.values[0],
      customdata: points.ids, marker: { color: points.on_front.map((f) => (f ? FRONT : DOMINATED)) } }];
    const layout = { margin: { t: 10 }, xaxis: { title: { text: "evaluation" } },
      yaxis: { title: { text: points.objectives[0] } }, uirevision: "front" };
    return Plotly.react(gd, data, layout, CONFIG);
  }

  function splom(gd, points) {
    const data = [{
      type: "splom", dimensions: points.objectives.map((key, k) => ({ label: short(key), values: points.values[k] })),
      customdata: points.ids, text: points.numbers.map((n) => `#${n}`),
      marker: { color: points.on_front.map((f) => (f ? FRONT : DOMINATED)),
        opacity: 0.8, size: points.on_front.map((f) => (f ? 7 : 4)) },
      diagonal: { visible: false }, showupperhalf: false, hovertemplate: "%{text}<extra></extra>",
    }];
    const m = points.objectives.length;
    const layout = { margin: { t: 10, r: 10, b: 40, l: 50 }, height: Math.max(420, 150 * (m - 1)),
      hovermode: "closest", dragmode: "select", uirevision: "front" };
    return Plotly.react(gd, data, layout, CONFIG);
  }

  // Parallel coordinates of the front only (dominated lines would hide it), evenly thinned to MAX_LINES.
  const MAX_LINES = 600;

  // WebGL, and slow to start where WebGL is emulated: job.js draws it after the rest of the page.
  async function parcoords(points) {
    if (points.objectives.length < 3) return;
    await ready;
    const gd = document.getElementById("parcoords");
    const { front } = split(points);
    const stride = Math.max(1, Math.ceil(front.length / MAX_LINES));
    const lines = front.filter((_, j) => j % stride === 0);
    const data = [{
      type: "parcoords", line: { color: FRONT },
      dimensions: points.objectives.map((key, k) => ({ label: short(key), values: pick(points, lines, k) })),
    }];
    gd.dataset.lines = String(lines.length);
    document.getElementById("parcoords-caption").textContent = `Parallel coordinates of the front: ${lines.length}`
      + (lines.length < front.length ? ` of its ${front.length} members (evenly thinned)` : " members");
    await Plotly.react(gd, data, { margin: { t: 40, r: 40, b: 20, l: 40 }, uirevision: "pc" }, CONFIG);
    gd.dataset.drawn = String(points.n_completed);
    if (!gd.dataset.drawnMs) gd.dataset.drawnMs = performance.now().toFixed(0);
  }

  async function front(points) {
    await ready;
    const gd = document.getElementById("front");
    const m = points.objectives.length;
    document.getElementById("parcoords").hidden = m < 3;
    document.getElementById("parcoords-caption").hidden = m < 3;
    if (m >= 3) await splom(gd, points); else if (m === 2) await scatter2d(gd, points); else await scatter1d(gd, points);
    if (!gd.dataset.clickBound) {
      gd.on("plotly_click", (event) => { const p = event.points && event.points[0]; if (p) MF.onPick(p.customdata); });
      gd.dataset.clickBound = "1";
    }
    const shown = points.ids.length;
    document.getElementById("front-caption").textContent =
      `${points.n_front} on the front of ${points.n_completed} completed` +
      (points.n_dominated_shown < points.n_dominated ? ` (showing ${shown}: dominated points thinned)` : "");
    gd.dataset.points = String(shown);
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

  return { front, parcoords, hypervolume };
})();
