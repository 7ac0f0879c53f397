// regretflow live page: polls live.json every second and draws each panel as a line chart
// on a canvas. No library and nothing fetched but live.json from the same server.
"use strict";

// eight colours that stay apart for common colour-vision deficiencies (Okabe-Ito)
const COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
const REFRESH_MS = 1000;
const charts = new Map(); // panel id -> {canvas, legend, panel}
let updates = 0;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(k * step);
  ticks.step = step;
  return ticks;
}

// a tick label with as many decimals as the step between ticks needs
function fmt(v, step) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (step === undefined) return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(1) : v.toPrecision(2);
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9) + (step / Math.pow(10, Math.floor(Math.log10(step))) === 2.5 ? 1 : 0)));
  return v.toFixed(decimals);
}

function draw(chart, t) {
  const { canvas, panel } = chart;
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  const left = 58, right = 8, top = 6, bottom = 34;
  const labels = Object.keys(panel.series);
  let lo = Infinity, hi = -Infinity;
  for (const label of labels) for (const v of panel.series[label]) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) { lo = 0; hi = 1; }
  if (lo > 0 && lo < hi * 0.5) lo = 0;
  if (hi === lo) { hi = lo + (Math.abs(lo) || 1) * 0.1; lo = lo - (Math.abs(lo) || 1) * 0.1; }
  const t0 = t.length ? t[0] : 0, t1 = t.length > 1 ? t[t.length - 1] : t0 + 1;
  const x = (v) => left + ((v - t0) / (t1 - t0 || 1)) * (w - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom);
  ctx.font = "11px system-ui, sans-serif";
  ctx.strokeStyle = "#e6e9ee"; ctx.fillStyle = "#44506a"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const yTicks = niceTicks(lo, hi, 4);
  for (const v of yTicks) {
    if (v < lo - 1e-12 || v > hi + 1e-12) continue;
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
    ctx.fillText(fmt(v, yTicks.step), left - 4, y(v));
  }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  const xTicks = niceTicks(t0, t1, 5);
  for (const v of xTicks) {
    if (v < t0 || v > t1) continue;
    ctx.fillText(fmt(v, xTicks.step), x(v), h - bottom + 3);
  }
  ctx.fillText("time since start (s)", left + (w - left - right) / 2, h - 14);
  ctx.save(); ctx.translate(10, top + (h - top - bottom) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle"; ctx.fillText(panel.unit, 0, 0); ctx.restore();
  labels.forEach((label, i) => {
    ctx.strokeStyle = COLOURS[i % COLOURS.length];
    ctx.lineWidth = label === "all" ? 2.5 : 1.5;
    ctx.setLineDash(i >= COLOURS.length ? [4, 3] : []);
    ctx.beginPath();
    let pen = false;
    panel.series[label].forEach((v, k) => {
      if (v === null || k >= t.length) { pen = false; return; }
      if (pen) ctx.lineTo(x(t[k]), y(v)); else ctx.moveTo(x(t[k]), y(v));
      pen = true;
    });
    ctx.stroke();
  });
  ctx.setLineDash([]);
}

function legend(box, panel) {
  box.textContent = "";
  Object.keys(panel.series).forEach((label, i) => {
    const s = el("span", {}, label);
    s.style.setProperty("--c", COLOURS[i % COLOURS.length]);
    if (i >= COLOURS.length) s.style.setProperty("--dash", "dashed");
    box.appendChild(s);
  });
}

function section(parent, id, heading, level) {
  let box = document.getElementById(id);
  if (!box) {
    box = el("section", { id });
    box.appendChild(el(level, {}, heading));
    box.appendChild(el("div", { class: "grid" }));
    parent.appendChild(box);
  }
  return box.querySelector(".grid");
}

function render(data) {
  document.getElementById("title").textContent = data.title;
  const root = document.getElementById("root");
  const groups = [{ id: "s-engine", heading: "engine: throughput, latency, dead letters", level: "h2", panels: [["engine", data.engine]] }];
  const placed = new Set();
  data.families.forEach((f, i) => {
    const models = f.models.filter((m) => data.models[m]);
    models.forEach((m) => placed.add(m));
    if (models.length) groups.push({ id: "s-f" + i, heading: f.title, level: "h2", panels: models.map((m) => [m, data.models[m].panels]) });
  });
  const rest = Object.keys(data.models).filter((m) => !placed.has(m));
  if (rest.length) groups.push({ id: "s-rest", heading: "models", level: "h2", panels: rest.map((m) => [m, data.models[m].panels]) });
  for (const g of groups) {
    const grid = section(root, g.id, g.heading, g.level);
    for (const [scope, panels] of g.panels) {
      panels.forEach((panel, k) => {
        const id = scope + "/" + k;
        let chart = charts.get(id);
        if (!chart) {
          const box = el("div", { class: "panel", "data-panel": id });
          const title = scope === "engine" ? panel.title : scope + " (" + data.models[scope].learner + "): " + panel.title;
          box.appendChild(el("div", { class: "title" }, title));
          const canvas = el("canvas", { role: "img", "aria-label": title });
          const lg = el("div", { class: "legend" });
          box.appendChild(canvas); box.appendChild(lg);
          grid.appendChild(box);
          chart = { canvas, legend: lg, panel, box };
          charts.set(id, chart);
        }
        chart.panel = panel;
        legend(chart.legend, panel);
        const last = Object.values(panel.series).map((s) => s[s.length - 1]).filter((v) => v !== null);
        chart.box.dataset.points = String(Object.values(panel.series).reduce((n, s) => n + s.filter((v) => v !== null).length, 0));
        chart.box.dataset.last = JSON.stringify(last);
        chart.lastT = data.t;
        draw(chart, data.t);
      });
    }
  }
}

async function refresh() {
  try {
    const response = await fetch("live.json", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const data = await response.json();
    render(data);
    updates += 1;
    document.body.dataset.updates = String(updates);
    document.body.dataset.samples = String(data.t.length);
    document.getElementById("status").textContent = data.t.length + " samples, " + fmt(data.now) + " s since start; updated " + new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("status").textContent = "no data from the engine (" + err.message + "); retrying";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
window.addEventListener("resize", () => { for (const c of charts.values()) draw(c, c.lastT || []); });
