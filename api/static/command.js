// gridgov command screen: a full-screen dark map (/styles/command.json) with live case counts
// per area — open, overdue, closed today — in the side panel and on the map (choropleth of open
// cases and labels-free circles), overdue cases highlighted, and a drill-down
// city → district → street → community → grid → case.
//
// Counts come from /api/stats/areas (one request per refresh); they are refreshed every few
// seconds and at once when the live feed (/api/live, Server-Sent Events) reports a case change.
// `window.gridgov` is the hook for the browser tests.

import {
  ApiError, LEVEL_SOURCES, cap, el, factsList, formatTime, getJSON, humanize, loadStyle,
  matchEntries, withToken, nf, duration, renderedDistinct, whenIdle, whoAmI,
} from "./gridmap.js";

const maplibregl = window.maplibregl;
const params = new URLSearchParams(window.location.search);
// ?refresh=N sets the polling period in seconds (2 … 300, default 5).
const POLL_MS = Math.min(300, Math.max(2, Number(params.get("refresh")) || 5)) * 1000;
const FOCUS = "#38bdf8";
const OPEN_COLOUR = "#f59e0b";
const OVERDUE_COLOUR = "#ef4444";
const CLOSED_STATUSES = new Set(["closed", "rejected"]); // as the map's tiles
const PADDING = { top: 120, bottom: 50, left: 50, right: 490 };
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

const state = {
  me: null,
  bbox: null,
  view: null,      // the area shown: {code, parent, children, childSource, totals, ...}
  caseId: null,
  case: null,
  live: false,
  updatedAt: null,
  seq: 0,
  navigating: null, // the seq of a navigation still loading
};

const $ = (sel) => document.querySelector(sel);
let map;

// ---------------------------------------------------------------------------------------------
// Style: the server's command style plus the layers of this screen

function augmentStyle(style) {
  const layers = style.layers;
  const fills = LEVEL_SOURCES.filter((s) => style.sources[s]).map((src) => ({
    id: `${src}-cmd-fill`, type: "fill", source: src, "source-layer": src,
    layout: { visibility: "none" }, filter: ["in", ["get", "code"], ["literal", []]],
    paint: {
      "fill-color": ["interpolate", ["linear"], ["coalesce", ["feature-state", "share"], 0],
        0, "#1c2a4f", 0.35, "#6b4b2a", 1, OPEN_COLOUR],
      "fill-opacity": ["case", ["boolean", ["feature-state", "hover"], false], 0.75, 0.45],
    },
  }));
  const focus = LEVEL_SOURCES.filter((s) => style.sources[s]).map((src) => ({
    id: `${src}-cmd-focus`, type: "line", source: src, "source-layer": src,
    filter: ["==", ["get", "code"], ""], layout: { "line-join": "round" },
    paint: { "line-color": FOCUS, "line-width": 3, "line-opacity": 0.95 },
  }));
  const firstLine = layers.findIndex((l) => l.id === "grids-fill");
  layers.splice(firstLine >= 0 ? firstLine + 1 : 1, 0, ...fills);
  const lastArea = Math.max(...layers.map((l, i) => (l.id.endsWith("-line")
    && LEVEL_SOURCES.includes(l.source) ? i : -1)));
  layers.splice(lastArea + 1, 0, ...focus);
  style.sources["cmd-bubbles"] = { type: "geojson",
    data: { type: "FeatureCollection", features: [] } };
  const bubbles = [
    { id: "cmd-bubble", type: "circle", source: "cmd-bubbles",
      paint: { "circle-radius": ["get", "r"], "circle-color": OPEN_COLOUR,
        "circle-opacity": 0.28, "circle-stroke-color": OPEN_COLOUR,
        "circle-stroke-width": 1.5, "circle-stroke-opacity": 0.9 } },
    { id: "cmd-bubble-overdue", type: "circle", source: "cmd-bubbles",
      filter: [">", ["get", "overdue"], 0],
      paint: { "circle-radius": ["get", "ri"], "circle-color": OVERDUE_COLOUR,
        "circle-opacity": 0.9 } },
  ];
  const casesAt = layers.findIndex((l) => l.id === "cases-agg");
  layers.splice(casesAt >= 0 ? casesAt : layers.length, 0, ...bubbles);
  if (style.sources.cases) {
    const pointAt = layers.findIndex((l) => l.id === "cases-point");
    layers.splice(pointAt, 0, {
      id: "cmd-overdue-halo", type: "circle", source: "cases", "source-layer": "cases",
      minzoom: 13, filter: ["==", ["get", "overdue"], true],
      paint: { "circle-radius": ["interpolate", ["linear"], ["zoom"], 13, 8, 18, 20],
        "circle-color": OVERDUE_COLOUR, "circle-opacity": 0.35, "circle-blur": 0.5 } });
    layers.push({ id: "cmd-case-selected", type: "circle", source: "cases",
      "source-layer": "cases", minzoom: 13, filter: ["==", ["id"], -1],
      paint: { "circle-radius": 12, "circle-color": "rgba(0,0,0,0)",
        "circle-stroke-color": FOCUS, "circle-stroke-width": 3 } });
  }
  // The wall shows the live situation: open cases only (closed ones are counted, not drawn —
  // a year of them would bury the rest), and no facilities (mostly cameras).
  if (style.sources.cases) style.sources.cases.url = casesTileJSON();
  for (const layer of layers) {
    if (layer.id === "facilities") layer.layout = { ...layer.layout, visibility: "none" };
  }
  return style;
}

function casesTileJSON() {
  return new URL("/tiles/cases.json?status=open", window.location.origin).toString();
}

function createMap(style) {
  map = new maplibregl.Map({
    container: "map", style,
    transformRequest: withToken,
    attributionControl: { compact: true, customAttribution: "gridgov" },
    dragRotate: false, pitchWithRotate: false,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "bottom-left");
  window.gridgov.map = map;
  return new Promise((resolve) => map.once("load", resolve));
}

// ---------------------------------------------------------------------------------------------
// Data: one view = the area shown and its children with counts

async function loadView(code) {
  if (!code) {
    const [top, streets] = await Promise.all([
      getJSON("/api/stats/areas", { level: "0" }),
      getJSON("/api/stats/areas", { level: "1", overdue_limit: 0 }),
    ]);
    return { code: null, parent: null, top: top.areas, children: streets.areas, childRank: 1,
      totals: top.totals, overdue: top.overdue_cases, dayStart: top.day_start, cases: null };
  }
  const data = await getJSON("/api/stats/areas", { parent: code });
  const view = { code, parent: data.parent, top: null, children: data.areas,
    childRank: data.parent.level + 1, totals: data.totals, overdue: data.overdue_cases,
    dayStart: data.day_start, cases: null };
  if (!data.areas.length) {
    const fc = await getJSON("/api/cases", { area: code, limit: 1000 });
    view.cases = fc.features;
    view.moreCases = Boolean(fc.next_cursor);
  }
  return view;
}

// ---------------------------------------------------------------------------------------------
// Panel

function renderKpis(totals) {
  $("#kpi-open").textContent = nf.format(totals.open);
  $("#kpi-overdue").textContent = nf.format(totals.overdue);
  $("#kpi-closed").textContent = nf.format(totals.closed_today);
  $(".kpi-overdue").classList.toggle("alert", totals.overdue > 0);
}

function crumbButton(label, code, current = false) {
  const b = el("button", { type: "button", textContent: label });
  if (current) b.setAttribute("aria-current", "page");
  b.addEventListener("click", () => go(code).catch(reportError));
  return b;
}

function renderCrumbs() {
  const v = state.view;
  const parts = [crumbButton("City", null, !v.code && !state.caseId)];
  if (v.parent) {
    for (const a of v.parent.ancestors) parts.push(crumbButton(a.name, a.code));
    parts.push(crumbButton(v.parent.name, v.parent.code, !state.caseId));
  }
  if (state.caseId) {
    parts.push(el("span.crumb-case", { textContent: `Case #${state.caseId}`,
      "aria-current": "page" }));
  }
  const nav = $("#crumbs");
  nav.replaceChildren(...parts.flatMap((p, i) => (i ? [el("span.sep", {
    textContent: "›", "aria-hidden": "true" }), p] : [p])));
}

function numberCell(n, kind) {
  return el(`td.num.${kind}`, { textContent: nf.format(n),
    className: `num ${kind}${n > 0 ? " nz" : ""}` });
}

function areaRow(a, max, { heading = false } = {}) {
  const name = el("button.area-name", { type: "button", textContent: a.name,
    "aria-label": `Open ${a.level_name ?? "area"} ${a.name} (${a.code})` });
  name.addEventListener("click", () => go(a.code).catch(reportError));
  const bar = el("span.bar", { "aria-hidden": "true" },
    el("span.bar-open", { style: { width: `${max ? (100 * a.open) / max : 0}%` } }),
    el("span.bar-overdue", { style: { width: `${max ? (100 * a.overdue) / max : 0}%` } }));
  const tr = el("tr", { dataset: { code: a.code, level: a.level_name ?? "" },
    className: heading ? "group" : "" },
  el("th", { scope: "row" }, name, el("span.code", { textContent: a.code }), bar),
  numberCell(a.open, "open"), numberCell(a.overdue, "overdue"),
  numberCell(a.closed_today, "closed"));
  tr.addEventListener("mouseenter", () => hoverArea(a.id, true));
  tr.addEventListener("mouseleave", () => hoverArea(a.id, false));
  return tr;
}

function renderTable() {
  const v = state.view;
  const body = $("#areas-body");
  const max = Math.max(1, ...v.children.map((a) => a.open));
  const rows = [];
  if (v.top) {
    for (const d of v.top) {
      rows.push(areaRow(d, 0, { heading: true }));
      for (const s of v.children.filter((c) => c.parent_code === d.code)) rows.push(areaRow(s, max));
    }
  } else {
    for (const a of v.children) rows.push(areaRow(a, max));
  }
  body.replaceChildren(...rows);
  const childName = v.children[0]?.level_name;
  $("#areas-section").hidden = !v.children.length;
  $("#areas-title").textContent = v.top ? "Districts and streets"
    : childName ? `${cap(childName)}s` : "Areas";
}

function isOpen(c) {
  return !CLOSED_STATUSES.has(c.status);
}

function caseItem(c, { showArea = true } = {}) {
  const overdue = c.overdue ?? (isOpen(c) && c.due_at && new Date(c.due_at) < new Date());
  const kind = overdue && isOpen(c) ? "overdue" : isOpen(c) ? "open" : "closed";
  const when = kind === "overdue" ? `overdue ${duration(Date.now() - new Date(c.due_at))}`
    : kind === "open" ? (c.due_at ? `due in ${duration(new Date(c.due_at) - Date.now())}` : "")
      : `closed ${formatTime(c.closed_at)}`;
  const b = el("button.case-item", { type: "button", dataset: { caseId: c.id, kind } },
    el(`span.dot.dot-${kind}`, { "aria-hidden": "true" }),
    el("span.case-main", {},
      el("span.case-title", { textContent: `#${c.id} ${c.category_name ?? c.category}` }),
      el("span.case-sub", { textContent: [humanize(c.status), when,
        showArea ? c.area_name : null].filter(Boolean).join(" · ") })));
  b.addEventListener("click", () => showCase(c.id, { fly: true }).catch(reportError));
  return el("li", {}, b);
}

function renderCases() {
  const v = state.view;
  const section = $("#cases-section");
  section.hidden = v.cases === null;
  if (v.cases === null) return;
  const dayStart = new Date(v.dayStart?.[v.parent?.jurisdiction] ?? Date.now() - 86400000);
  const cases = v.cases.map((f) => f.properties);
  const open = cases.filter(isOpen).sort((a, b) => (b.overdue - a.overdue)
    || String(a.due_at).localeCompare(String(b.due_at)));
  const closedToday = cases.filter((c) => c.status === "closed" && c.closed_at
    && new Date(c.closed_at) >= dayStart);
  const older = cases.length - open.length - closedToday.length;
  const items = [...open, ...closedToday].map((c) => caseItem(c, { showArea: false }));
  if (!items.length) items.push(el("li.empty", { textContent: "No open cases and none closed today." }));
  if (older > 0 || v.moreCases) {
    items.push(el("li.more", { textContent: `${v.moreCases ? "More than " : ""}${nf.format(older)}`
      + " older closed or rejected cases not listed." }));
  }
  $("#case-list").replaceChildren(...items);
}

function renderOverdue() {
  const list = state.view.overdue ?? [];
  $("#overdue-section").hidden = state.view.cases !== null;
  $("#overdue-list").replaceChildren(...(list.length
    ? list.map((c) => caseItem({ ...c, overdue: true }))
    : [el("li.empty", { textContent: "No overdue cases here." })]));
}

function renderScope() {
  const v = state.view;
  const title = v.parent ? v.parent.name : "City overview";
  const sub = v.parent
    ? `${cap(v.parent.level_name)} ${v.parent.code}`
      + (v.children.length ? ` · ${v.children.length} ${v.children[0].level_name}s` : "")
    : `${v.top.length} districts · ${v.children.length} streets`;
  $("#scope-title").textContent = title;
  $("#scope-sub").textContent = sub;
}

function renderLive() {
  const box = $("#live");
  const at = state.updatedAt ? state.updatedAt.toLocaleTimeString("en-GB") : "–";
  box.replaceChildren(el(`span.live-dot${state.live ? ".on" : ""}`, { "aria-hidden": "true" }),
    state.live ? `Live · updated ${at}` : `Every ${POLL_MS / 1000} s · updated ${at}`);
}

function renderLegendCases() {
  // Only open cases are drawn here, so the style's "closed" colour is left out.
  const entries = matchEntries(map.getPaintProperty("cases-point", "circle-color"))
    .filter((e) => e.value !== null);
  const label = { overdue: "Overdue case (with halo)", open: "Open case" };
  $("#legend-cases").replaceChildren(...entries.map((e) => el("span.legend-item", {},
    el("span.dot", { style: { background: e.colour }, dataset: { colour: e.colour },
      "aria-hidden": "true" }), label[e.value] ?? humanize(e.value))));
}

// ---------------------------------------------------------------------------------------------
// Map rendering of a view

let stateSource = null; // the source whose features carry our feature-state

function renderMap() {
  const v = state.view;
  const childSource = LEVEL_SOURCES[v.childRank];
  if (stateSource && stateSource !== childSource) {
    map.removeFeatureState({ source: stateSource, sourceLayer: stateSource });
  }
  stateSource = childSource ?? null;
  const max = Math.max(1, ...v.children.map((a) => a.open));
  for (const src of LEVEL_SOURCES) {
    const id = `${src}-cmd-fill`;
    if (!map.getLayer(id)) continue;
    const on = src === childSource && v.children.length > 0;
    map.setLayoutProperty(id, "visibility", on ? "visible" : "none");
    if (on) map.setFilter(id, ["in", ["get", "code"], ["literal", v.children.map((a) => a.code)]]);
    map.setFilter(`${src}-cmd-focus`, ["==", ["get", "code"],
      v.parent && LEVEL_SOURCES[v.parent.level] === src ? v.parent.code : ""]);
  }
  if (childSource) {
    // Colour by rank between the fewest and the most open cases among the areas shown: an
    // even load reads as even, a hot spot stands out.
    const min = Math.min(...v.children.map((a) => a.open));
    for (const a of v.children) {
      const share = max === min ? (max > 0 ? 0.5 : 0) : (a.open - min) / (max - min);
      map.setFeatureState({ source: childSource, sourceLayer: childSource, id: a.id },
        { open: a.open, share });
    }
  }
  const rMax = 26;
  map.getSource("cmd-bubbles").setData({ type: "FeatureCollection",
    features: v.children.filter((a) => a.open > 0).map((a) => {
      const r = 5 + rMax * Math.sqrt(a.open / max);
      return { type: "Feature", id: a.id, geometry: { type: "Point", coordinates: a.point },
        properties: { code: a.code, name: a.name, open: a.open, overdue: a.overdue,
          closed_today: a.closed_today, r, ri: Math.max(3, r * Math.sqrt(a.overdue / a.open)) } };
    }) });
}

function fitView() {
  const v = state.view;
  let bbox = v.parent?.bbox ?? state.bbox;
  if (!v.parent && v.top?.length) {
    bbox = v.top.reduce((b, a) => [Math.min(b[0], a.bbox[0]), Math.min(b[1], a.bbox[1]),
      Math.max(b[2], a.bbox[2]), Math.max(b[3], a.bbox[3])], [180, 90, -180, -90]);
  }
  if (!bbox) return;
  map.fitBounds([[bbox[0], bbox[1]], [bbox[2], bbox[3]]], { padding: PADDING, maxZoom: 17.5,
    duration: reducedMotion ? 0 : 800 });
}

// A refresh rebuilds only what changed, so focus, hover and a click in progress survive it.
const lastRendered = new Map();
function renderIfChanged(name, data, fn) {
  const key = JSON.stringify(data);
  if (lastRendered.get(name) === key) return;
  lastRendered.set(name, key);
  fn();
}

function render() {
  const v = state.view;
  renderKpis(v.totals);
  renderIfChanged("crumbs", [v.code, v.parent?.ancestors, v.parent?.name, state.caseId],
    renderCrumbs);
  renderScope();
  // Times in the lists ("overdue 2 h") move with the clock: redraw them each minute.
  const minute = Math.floor(Date.now() / 60000);
  renderIfChanged("table", [v.code, v.top, v.children], renderTable);
  renderIfChanged("cases", [v.code, v.cases, minute], renderCases);
  renderIfChanged("overdue", [v.code, v.overdue, v.cases === null, minute], renderOverdue);
  renderIfChanged("map", [v.code, v.children], renderMap);
  renderLive();
}

// ---------------------------------------------------------------------------------------------
// Navigation

async function go(code, { fit = true, keepCase = false } = {}) {
  const seq = ++state.seq; // also voids any refresh still loading the view we leave
  state.navigating = seq;
  let view;
  try {
    view = await loadView(code);
  } finally {
    if (state.navigating === seq) state.navigating = null;
  }
  if (seq !== state.seq) return state.view; // a newer navigation won
  state.view = view;
  state.updatedAt = new Date();
  if (!keepCase) clearCase();
  const hash = code ? `#${encodeURIComponent(code)}` : "";
  if (window.location.hash !== hash) {
    window.history.replaceState(null, "", hash || window.location.pathname
      + window.location.search);
  }
  render();
  if (fit) fitView();
  await whenIdle(map);
  return view;
}

async function refresh() {
  if (!state.view || state.navigating) return;
  const seq = state.seq;
  const view = await loadView(state.view.code);
  if (seq !== state.seq || state.navigating) return; // navigated meanwhile
  state.view = view;
  state.updatedAt = new Date();
  render();
  if (state.caseId) await loadCase(state.caseId).catch(() => {});
  if (typeof map.refreshTiles === "function" && map.getSource("cases")) map.refreshTiles("cases");
}

let refreshTimer = null;
function scheduleRefresh(delay = 400) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh().catch(reportError), delay);
}

// ---------------------------------------------------------------------------------------------
// Cases

function clearCase() {
  state.caseId = null;
  state.case = null;
  $("#case-section").hidden = true;
  if (map.getLayer("cmd-case-selected")) map.setFilter("cmd-case-selected", ["==", ["id"], -1]);
}

async function loadCase(id) {
  const [feature, history] = await Promise.all([
    getJSON(`/api/cases/${id}`), getJSON(`/api/cases/${id}/events`).catch(() => null)]);
  if (state.caseId !== id) return null;
  state.case = feature;
  renderCase(feature, history?.events ?? []);
  return feature;
}

function renderCase(feature, events) {
  const c = feature.properties;
  const open = isOpen(c);
  const kind = c.overdue ? "overdue" : open ? "open" : "closed";
  const badge = el(`span.badge.badge-${kind}`, { textContent: kind === "overdue"
    ? `Overdue ${duration(Date.now() - new Date(c.due_at))}` : humanize(c.status) });
  const close = el("button.close", { type: "button", "aria-label": "Close the case details",
    textContent: "×" });
  close.addEventListener("click", () => { clearCase(); renderCrumbs(); });
  const facts = factsList([
    ["Status", humanize(c.status)],
    ["Category", `${c.category_name} (${c.category})`],
    ["Grid", c.area_name],
    ["Grid code", c.area_code, "code"],
    ["Department", c.department],
    ["Channel", humanize(c.channel)],
    ["Urgency", c.urgency],
    ["Reported", formatTime(c.reported_at)],
    ["Due", formatTime(c.due_at)],
    ["Closed", c.closed_at ? formatTime(c.closed_at) : null],
    ["Escalated", c.escalation_level ? `${c.escalation_level} level(s) up` : null],
  ]);
  const parts = [el("div.case-head", {}, el("h3", { id: "case-title",
    textContent: `Case #${c.id}` }), badge, close), facts];
  if (c.description) {
    const text = c.description.length > 280 ? `${c.description.slice(0, 277)}…` : c.description;
    parts.push(el("p.description", { textContent: text }));
  }
  if (events.length) {
    parts.push(el("ol.timeline", {}, events.slice(-6).map((e) => el("li", {},
      el("span.t", { textContent: formatTime(e.at ?? e.created_at) }),
      el("span", { textContent: humanize(e.action ?? e.kind ?? "")
        + (e.to_state ? ` → ${humanize(e.to_state)}` : "") })))));
  }
  const box = $("#case-detail");
  box.dataset.caseId = c.id;
  box.dataset.kind = kind;
  box.replaceChildren(...parts);
  $("#case-section").hidden = false;
}

async function showCase(id, { fly = false } = {}) {
  state.caseId = id;
  renderCrumbs();
  if (map.getLayer("cmd-case-selected")) map.setFilter("cmd-case-selected", ["==", ["id"], id]);
  const feature = await loadCase(id);
  if (feature && fly) {
    const [lon, lat] = [feature.properties.lon, feature.properties.lat];
    map.easeTo({ center: [lon, lat], zoom: Math.max(map.getZoom(), 16.5),
      padding: PADDING, duration: reducedMotion ? 0 : 800 });
  }
  return feature;
}

// ---------------------------------------------------------------------------------------------
// Interaction

let hovered = null;
function hoverArea(id, on) {
  if (!stateSource || id === undefined) return;
  map.setFeatureState({ source: stateSource, sourceLayer: stateSource, id }, { hover: on });
}

function hitAt(point) {
  const box = [[point.x - 4, point.y - 4], [point.x + 4, point.y + 4]];
  const layers = ["cases-point", "cmd-bubble"].filter((id) => map.getLayer(id));
  for (const id of layers) {
    const [f] = map.queryRenderedFeatures(box, { layers: [id] });
    if (f) return f;
  }
  const fill = stateSource ? `${stateSource}-cmd-fill` : null;
  if (fill && map.getLayoutProperty(fill, "visibility") !== "none") {
    const [f] = map.queryRenderedFeatures(point, { layers: [fill] });
    if (f) return f;
  }
  return null;
}

function setupInteraction() {
  map.on("click", (e) => {
    const f = hitAt(e.point);
    if (!f) return;
    if (f.layer.id === "cases-point") showCase(f.id).catch(reportError);
    else go(f.properties.code).catch(reportError);
  });
  map.on("mousemove", (e) => {
    const f = hitAt(e.point);
    map.getCanvas().style.cursor = f ? "pointer" : "";
    const chip = $("#hover");
    const area = f && f.layer.id !== "cases-point"
      ? state.view.children.find((a) => a.code === f.properties.code) : null;
    if (hovered !== null && hovered !== area?.id) hoverArea(hovered, false);
    hovered = area?.id ?? null;
    if (!area) {
      chip.hidden = true;
      return;
    }
    hoverArea(area.id, true);
    chip.replaceChildren(el("strong", { textContent: area.name }),
      el("span", { textContent: `${nf.format(area.open)} open · ${nf.format(area.overdue)}`
        + ` overdue · ${nf.format(area.closed_today)} closed today` }));
    chip.style.left = `${e.point.x + 14}px`;
    chip.style.top = `${e.point.y + 14}px`;
    chip.hidden = false;
  });
  map.on("mouseout", () => { $("#hover").hidden = true; });
  window.addEventListener("hashchange", () => {
    const code = decodeURIComponent(window.location.hash.slice(1)) || null;
    if (code !== state.view?.code) go(code).catch(reportError);
  });
}

function connectLive() {
  if (!("EventSource" in window)) return;
  const source = new EventSource("/api/live?types=case");
  source.addEventListener("hello", () => { state.live = true; renderLive(); });
  source.addEventListener("case", () => scheduleRefresh());
  source.addEventListener("resync", () => scheduleRefresh());
  // The browser reconnects by itself; until then the poll keeps the screen fresh.
  source.onerror = () => { state.live = false; renderLive(); };
  window.gridgov.liveSource = source;
}

function tickClock() {
  $("#clock").textContent = new Date().toLocaleTimeString("en-GB");
}

function reportError(err) {
  const box = $("#live");
  box.textContent = err instanceof ApiError ? err.message : `Error: ${err.message}`;
  box.classList.add("error");
}

let pulse = 0;
function animateHalo() {
  // A slow breathing of the overdue halo; skipped when the viewer asked for reduced motion.
  pulse = (pulse + 1) % 20;
  const t = 0.22 + 0.22 * Math.sin((pulse / 20) * 2 * Math.PI);
  if (map.getLayer("cmd-overdue-halo")) map.setPaintProperty("cmd-overdue-halo", "circle-opacity", t);
}

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
  tickClock();
  setInterval(tickClock, 1000);
  const me = await whoAmI().catch(() => ({ role: "public" }));
  state.me = me;
  const [style, levels] = await Promise.all([loadStyle("command", me),
    getJSON("/api/stats/levels")]);
  state.bbox = levels.bbox;
  await createMap(augmentStyle(style));
  setupInteraction();
  renderLegendCases();
  $("#loading").hidden = true;
  const code = decodeURIComponent(window.location.hash.slice(1)) || null;
  await go(code);
  setInterval(() => refresh().catch(reportError), POLL_MS);
  connectLive();
  if (!reducedMotion) setInterval(animateHalo, 200); // a 4 s breath, five repaints a second
}

window.gridgov = {
  map: null,
  state,
  go,
  refresh,
  showCase,
  whenIdle: () => whenIdle(map),
  rendered: (layers) => renderedDistinct(map, layers).map((f) => ({ id: f.id, layer: f.layer.id,
    code: f.properties.code, overdue: f.properties.overdue })),
};
window.gridgov.ready = start().catch((err) => {
  $("#loading").hidden = true;
  reportError(err);
  throw err;
});
