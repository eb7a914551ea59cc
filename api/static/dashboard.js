// Evaluation dashboard: KPI tiles, a time series, rankings and a choropleth, all from the
// gridgov API on this server (MapLibre vendored; charts are plain SVG; nothing external).
const $ = (sel) => document.querySelector(sel);
const TILES = [
  ["n", "cases", (v) => v.toLocaleString("en")],
  ["closure_rate", "closure rate", pct],
  ["on_time_rate", "on-time closure", pct],
  ["mean_ttc_h", "mean time to close (h)", num1],
  ["p90_ttc_h", "p90 time to close (h)", num1],
  ["reopen_rate", "reopen rate", pct],
  ["verify_pass_rate", "verification pass", pct],
  ["satisfaction", "satisfaction (1–5)", (v) => v.toFixed(2)],
  ["cases_per_1000", "cases per 1,000 residents", num1],
  ["score", "score (0–100)", num1],
];
const COLOURS = ["#d7301f", "#fc8d59", "#fdcc8a", "#b3de69", "#1a9850"];

function pct(v) { return (100 * v).toFixed(1) + " %"; }
function num1(v) { return v.toFixed(1); }
function fmt(v, f) { return v === null || v === undefined ? "–" : f(v); }

const state = { kpis: null, series: null, departments: null, areas: null, loads: 0 };
let resolveReady;
const ready = new Promise((r) => { resolveReady = r; });
window.gridgovDashboard = { state, ready, reload: load, params };

function params(extra = {}) {
  const p = new URLSearchParams({ period: $("#period").value, basis: $("#basis").value });
  if ($("#category").value) p.set("category", $("#category").value);
  for (const [k, v] of Object.entries(extra)) p.set(k, v);
  return p;
}

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status} ${(await r.json()).detail}`);
  return r.json();
}

async function categories() {
  const data = await getJSON("/api/categories");
  const sel = $("#category");
  for (const c of data.categories.filter((c) => c.depth <= 1)) {
    const o = document.createElement("option");
    o.value = c.code;
    o.textContent = `${"· ".repeat(c.depth)}${c.code} ${c.name}`;
    sel.append(o);
  }
}

function renderTiles(total, targets) {
  const box = $("#tiles");
  box.replaceChildren();
  for (const [key, label, f] of TILES) {
    const v = total[key];
    const t = targets[key];
    const div = document.createElement("div");
    div.className = "tile";
    div.dataset.kpi = key;
    div.dataset.value = v === null || v === undefined ? "" : String(v);
    if (t && t.target !== null && v !== null && v !== undefined) {
      const ok = t.direction === "higher" ? v >= t.target : v <= t.target;
      div.classList.add(ok ? "met" : "missed");
    }
    const tgt = t && t.target !== null ? `<div class="target">target ${t.direction === "higher" ? "≥" : "≤"} ${t.target}</div>` : "";
    div.innerHTML = `<div class="label">${label}</div><div class="value">${fmt(v, f)}</div>${tgt}`;
    box.append(div);
  }
}

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

function renderRanking(rows) {
  const body = $("#ranking tbody");
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.code = r.code;
    tr.append(cell(r.rank ?? "–"), cell(r.code), cell(r.name ?? ""), cell(r.n),
      cell(fmt(r.closure_rate, pct)), cell(fmt(r.on_time_rate, pct)), cell(fmt(r.p90_ttc_h, num1)),
      cell(fmt(r.satisfaction, (v) => v.toFixed(2))), cell(fmt(r.cases_per_1000, num1)),
      cell(fmt(r.score, num1)));
    body.append(tr);
  }
}

function renderDepartments(rows) {
  const body = $("#departments tbody");
  body.replaceChildren();
  for (const r of rows.filter((r) => r.n > 0)) {
    const tr = document.createElement("tr");
    tr.append(cell(r.rank ?? "–"), cell(`${r.code} ${r.name ?? ""}`), cell(r.n),
      cell(fmt(r.closure_rate, pct)), cell(fmt(r.on_time_rate, pct)),
      cell(fmt(r.mean_ttc_h, num1)), cell(fmt(r.reopen_rate, pct)), cell(fmt(r.score, num1)));
    body.append(tr);
  }
}

function renderSeries(rows) {
  const svg = $("#series");
  const W = 600, H = 220, L = 40, R = 40, T = 10, B = 30;
  const maxN = Math.max(1, ...rows.map((r) => r.n));
  const x = (i) => L + (rows.length <= 1 ? 0 : (i * (W - L - R)) / (rows.length - 1));
  const yN = (v) => H - B - (v / maxN) * (H - T - B);
  const yR = (v) => H - B - v * (H - T - B);
  const parts = [`<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#ccc"/>`];
  const bw = Math.max(2, (W - L - R) / Math.max(rows.length, 1) * 0.6);
  rows.forEach((r, i) => {
    parts.push(`<rect class="bar" data-period="${r.period}" data-n="${r.n}" x="${x(i) - bw / 2}" y="${yN(r.n)}" width="${bw}" height="${H - B - yN(r.n)}" fill="#9ecae1"><title>${r.period}: ${r.n} cases</title></rect>`);
    if (i % Math.ceil(rows.length / 8) === 0) parts.push(`<text x="${x(i)}" y="${H - 12}" text-anchor="middle">${r.period.slice(0, 7)}</text>`);
  });
  const pts = rows.map((r, i) => r.on_time_rate === null ? null : `${x(i)},${yR(r.on_time_rate)}`).filter(Boolean);
  if (pts.length) parts.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="#0b5c8a" stroke-width="2"/>`);
  parts.push(`<text x="${L - 4}" y="${T + 8}" text-anchor="end">${maxN}</text>`);
  parts.push(`<text x="${W - R + 4}" y="${T + 8}">100 %</text><text x="${W - R + 4}" y="${H - B}">0 %</text>`);
  parts.push(`<text x="${L}" y="${T + 8}" dx="6">bars: cases · line: on-time rate</text>`);
  svg.innerHTML = parts.join("");
}

// --- map
let map = null;
function initMap() {
  map = new maplibregl.Map({
    container: "map",
    style: { version: 8, sources: {}, layers: [{ id: "bg", type: "background", paint: { "background-color": "#eef2f5" } }] },
    center: [24.94, 60.17], zoom: 12, attributionControl: false,
  });
  window.gridgovDashboard.map = map;
  return new Promise((r) => map.on("load", r));
}

function classBreaks(values) {
  const v = values.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  if (!v.length) return [];
  return [1, 2, 3, 4].map((k) => v[Math.min(v.length - 1, Math.floor((k * v.length) / 5))]);
}

async function renderMap(rows) {
  const level = $("#level").value;
  const metric = $("#metric").value;
  if (!state.areas || state.areas.level !== level) {
    state.areas = { level, data: await getJSON(`/api/areas?level=${level}`) };
  }
  const byCode = new Map(rows.map((r) => [r.code, r]));
  const lowerIsBetter = metric === "cases_per_1000" || metric === "n";
  const breaks = classBreaks(rows.map((r) => r[metric]));
  const features = state.areas.data.features.map((f) => {
    const r = byCode.get(f.properties.code) || {};
    const v = r[metric];
    let k = -1;
    if (v !== null && v !== undefined) { k = breaks.filter((b) => v > b).length; if (lowerIsBetter) k = 4 - k; }
    return { ...f, properties: { code: f.properties.code, name: f.properties.name, value: v ?? null, klass: k } };
  });
  const data = { type: "FeatureCollection", features };
  if (map.getSource("areas")) map.getSource("areas").setData(data);
  else {
    map.addSource("areas", { type: "geojson", data });
    map.addLayer({ id: "areas-fill", type: "fill", source: "areas", paint: {
      "fill-color": ["match", ["get", "klass"], 0, COLOURS[0], 1, COLOURS[1], 2, COLOURS[2], 3, COLOURS[3], 4, COLOURS[4], "#cccccc"],
      "fill-opacity": 0.75 } });
    map.addLayer({ id: "areas-line", type: "line", source: "areas", paint: { "line-color": "#555", "line-width": 0.6 } });
    map.on("click", "areas-fill", (e) => {
      const p = e.features[0].properties;
      new maplibregl.Popup().setLngLat(e.lngLat).setText(`${p.code} ${p.name}: ${p.value}`).addTo(map);
    });
  }
  const b = new maplibregl.LngLatBounds();
  for (const f of features) for (const ring of (f.geometry.type === "MultiPolygon" ? f.geometry.coordinates.flat() : f.geometry.coordinates)) for (const c of ring) b.extend(c);
  if (!b.isEmpty()) map.fitBounds(b, { padding: 20, duration: 0 });
  $("#legend").innerHTML = COLOURS.map((c, i) => `<li><span style="background:${c}"></span>${i === 0 ? "worst" : i === 4 ? "best" : ""}</li>`).join("") + `<li>${metric}</li>`;
}

async function load() {
  const seq = ++state.loads;
  $("#status").textContent = "loading…";
  const level = $("#level").value;
  const kp = params({ level });
  const dp = params({ by: "department" });
  const sp = params({ interval: "month" });
  sp.delete("basis");
  try {
    const [kpis, deps, series] = await Promise.all([
      getJSON(`/api/kpis?${kp}`), getJSON(`/api/kpis?${dp}`), getJSON(`/api/kpis/series?${sp}`)]);
    if (seq !== state.loads) return;  // a newer filter change won
    Object.assign(state, { kpis, departments: deps, series });
    renderTiles(kpis.total, kpis.targets);
    renderRanking(kpis.rows);
    renderDepartments(deps.rows);
    renderSeries(series.rows);
    $("#ranking-csv").href = `/api/kpis?${kp}&format=csv`;
    $("#department-csv").href = `/api/kpis?${dp}&format=csv`;
    $("#series-csv").href = `/api/kpis/series?${sp}&format=csv`;
    await renderMap(kpis.rows);
    $("#status").textContent = `${kpis.level} · ${kpis.since} – ${kpis.until} · ${kpis.total.n} cases`;
    document.body.dataset.loaded = String(seq);
  } catch (err) {
    $("#status").textContent = String(err.message || err);
    throw err;
  }
}

async function main() {
  await Promise.all([initMap(), categories()]);
  for (const id of ["level", "period", "category", "basis", "metric"]) $("#" + id).addEventListener("change", () => load());
  await load();
  resolveReady(true);
}

main();
