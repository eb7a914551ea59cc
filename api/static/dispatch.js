// gridgov dispatch console (/dispatch). A dispatcher signs in with a bearer token (kept in
// sessionStorage, as on /cases), sees open cases and on-duty responders on the map — overdue
// cases stand out and are listed first, responders are coloured by status and faded when their
// position is stale — and everything moves live with the Server-Sent-Events feed (/api/live,
// read with fetch() because EventSource cannot send the Authorization header).
//
// Selecting a case (list or map) ranks the nearest available responders by road ETA
// (GET /api/responders/nearest?mode=road&route=true); the highlighted responder's route is
// drawn; "Dispatch" sends POST /api/cases/{id}/actions {action: "dispatch", responder_id}.
// The server decides in the end (role, scope, state, responder busy): a refusal shows its reason.
// `window.gridgov` is the hook for the browser tests.

import {
  cap, el, factsList, formatTime, duration, humanize, nf, loadStyle, matchEntries, whenIdle,
  renderedDistinct, bboxOfGeometry, TOKEN_KEY,
} from "./gridmap.js";

const maplibregl = window.maplibregl;
const $ = (sel) => document.querySelector(sel);

// A case is open until closed, rejected or redirected away; it can be dispatched from these:
const OPEN_STATUSES = ["reported", "accepted", "filed", "redirected", "dispatched",
  "in_progress", "handled", "verified", "reopened"];
const DISPATCHABLE = new Set(["filed", "redirected", "reopened", "dispatched"]);
const IN_WORK = new Set(["dispatched", "in_progress", "handled", "verified"]);
const DISPATCH_ROLES = new Set(["dispatcher", "admin"]);
const READ_ROLES = new Set(["call_taker", "dispatcher", "supervisor", "analyst", "admin"]);
const CASE_LIMIT = 1000;
const K = 5;
const STALE_S = 600; // GRIDGOV_DISPATCH_STALE_AFTER_S default; the server's `stale` flag wins
// Colours: the server style's own (layers/styles.py PALETTE) when it has them.
const COLOURS = {
  available: "#1a9850", busy: "#f08a24", off: "#9ca3af",
  overdue: "#c51b8a", waiting: "#e31a1c", inwork: "#2563eb",
  route: "#0b5c8a", selected: "#111827",
};
const PADDING = { top: 60, bottom: 60, left: 60, right: 60 };

const state = {
  token: null,
  me: null,
  cases: new Map(),       // id → case properties
  responders: new Map(),  // id → responder properties (+ lon/lat)
  casesTruncated: false,
  selected: null,         // case id
  ranking: [],            // nearest results for the selected case
  rankingFor: null,       // case id the ranking is for
  highlighted: null,      // responder id whose route is drawn
  live: false,
  liveAt: null,
  dispatching: false,
};
let map;
let live = null; // {ctrl: AbortController}

class ApiError extends Error {
  constructor(status, detail, field) {
    super(detail);
    this.status = status;
    this.field = field;
  }
}

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

async function api(path, { params, method = "GET", json, signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "" && v !== false) url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (json) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(url, { method, headers, signal, body: json ? JSON.stringify(json) : undefined });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "could not reach the server; check the connection and retry");
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const detail = typeof data?.detail === "string" ? data.detail
      : Array.isArray(data?.detail) ? data.detail.map((d) => d.msg).join("; ") : resp.statusText;
    throw new ApiError(resp.status, detail || `HTTP ${resp.status}`, data?.field);
  }
  return data;
}

function message(sel, text, kind = "error") {
  const box = $(sel);
  box.className = text ? `message ${kind}` : "";
  box.textContent = text || "";
}

const minutes = (s) => (s < 60 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);
const metres = (m) => (m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(1)} km`);

// ---------------------------------------------------------------------------------------------
// Map

function augmentStyle(style) {
  // Responders and cases are drawn from live GeoJSON here, not from tiles; components and
  // facilities would only bury them.
  const drop = new Set(["cases", "responders", "components", "facilities"]);
  const responderPaint = style.layers.find((l) => l.id === "responders")?.paint?.["circle-color"];
  for (const e of matchEntries(responderPaint)) if (e.value) COLOURS[e.value] = e.colour;
  style.layers = style.layers.filter((l) => !drop.has(l.source));
  for (const s of drop) delete style.sources[s];
  const empty = { type: "FeatureCollection", features: [] };
  Object.assign(style.sources, {
    "dsp-cases": { type: "geojson", data: empty },
    "dsp-responders": { type: "geojson", data: empty },
    "dsp-route": { type: "geojson", data: empty },
  });
  const caseColour = ["case", ["get", "overdue"], COLOURS.overdue,
    ["get", "inwork"], COLOURS.inwork, COLOURS.waiting];
  style.layers.push(
    { id: "dsp-route-casing", type: "line", source: "dsp-route",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": "#ffffff", "line-width": 9, "line-opacity": 0.9 } },
    { id: "dsp-route", type: "line", source: "dsp-route",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": COLOURS.route, "line-width": 5 } },
    { id: "dsp-cases-overdue-halo", type: "circle", source: "dsp-cases",
      filter: ["==", ["get", "overdue"], true],
      paint: { "circle-radius": 16, "circle-color": COLOURS.overdue, "circle-opacity": 0.25,
        "circle-blur": 0.4 } },
    { id: "dsp-cases", type: "circle", source: "dsp-cases",
      paint: { "circle-color": caseColour,
        "circle-radius": ["case", ["get", "overdue"], 8, 6],
        "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5 } },
    { id: "dsp-case-selected", type: "circle", source: "dsp-cases",
      filter: ["==", ["get", "id"], -1],
      paint: { "circle-radius": 13, "circle-color": "rgba(0,0,0,0)",
        "circle-stroke-color": COLOURS.selected, "circle-stroke-width": 3 } },
    { id: "dsp-responders", type: "circle", source: "dsp-responders",
      paint: { "circle-color": ["match", ["get", "status"], "available", COLOURS.available,
        "busy", COLOURS.busy, COLOURS.off],
      "circle-radius": ["case", ["==", ["get", "kind"], "vehicle"], 7, 5.5],
      "circle-opacity": ["case", ["get", "stale"], 0.35, 1],
      "circle-stroke-color": ["case", ["get", "ranked"], "#111827", "#ffffff"],
      "circle-stroke-width": ["case", ["get", "ranked"], 2, 1.5] } },
    { id: "dsp-responder-highlight", type: "circle", source: "dsp-responders",
      filter: ["==", ["get", "id"], -1],
      paint: { "circle-radius": 12, "circle-color": "rgba(0,0,0,0)",
        "circle-stroke-color": COLOURS.route, "circle-stroke-width": 3 } },
  );
  return style;
}

function createMap(style) {
  map = new maplibregl.Map({
    container: "map", style,
    attributionControl: { compact: true, customAttribution: "gridgov" },
    dragRotate: false, pitchWithRotate: false,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "bottom-left");
  window.gridgov.map = map;
  return new Promise((resolve) => map.once("load", resolve));
}

// The server flags overdue cases when it lists them; a deadline that passes while the page is
// open turns the case overdue here too.
function isOverdue(c) {
  return Boolean(c.overdue) || (Boolean(c.due_at) && new Date(c.due_at).getTime() < Date.now()
    && !["closed", "rejected", "redirected"].includes(c.status));
}

function isStale(r) {
  if (!r.position_at) return true;
  return r.stale || (Date.now() - new Date(r.position_at)) / 1000 > STALE_S;
}

function caseFeatures() {
  const out = [];
  for (const c of state.cases.values()) {
    if (c.lon === null || c.lon === undefined) continue;
    out.push({ type: "Feature", id: c.id, geometry: { type: "Point", coordinates: [c.lon, c.lat] },
      properties: { id: c.id, status: c.status, overdue: isOverdue(c),
        inwork: IN_WORK.has(c.status), category: c.category_name ?? c.category } });
  }
  return out;
}

function responderFeatures() {
  const ranked = new Set(state.ranking.map((r) => r.id));
  const out = [];
  for (const r of state.responders.values()) {
    if (r.lon === null || r.lon === undefined || r.status === "off") continue;
    out.push({ type: "Feature", id: r.id, geometry: { type: "Point", coordinates: [r.lon, r.lat] },
      properties: { id: r.id, name: r.name ?? `#${r.id}`, status: r.status, kind: r.kind ?? "staff",
        stale: isStale(r), ranked: ranked.has(r.id) } });
  }
  return out;
}

let renderPending = false;
function scheduleMapRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderMap();
  });
}

function renderMap() {
  if (!map) return;
  map.getSource("dsp-cases").setData({ type: "FeatureCollection", features: caseFeatures() });
  map.getSource("dsp-responders").setData({ type: "FeatureCollection",
    features: responderFeatures() });
  map.setFilter("dsp-case-selected", ["==", ["get", "id"], state.selected ?? -1]);
  map.setFilter("dsp-responder-highlight", ["==", ["get", "id"], state.highlighted ?? -1]);
  const hit = state.ranking.find((r) => r.id === state.highlighted);
  map.getSource("dsp-route").setData({ type: "FeatureCollection",
    features: hit?.route ? [{ type: "Feature", geometry: hit.route,
      properties: { responder: hit.id } }] : [] });
  renderCounts();
}

function renderLegend() {
  const item = (colour, label, cls = "") => el("span.legend-item", {},
    el(`span.swatch${cls}`, { style: { background: colour }, "aria-hidden": "true" }), label);
  $("#legend").replaceChildren(
    el("strong", { textContent: "Cases" }),
    item(COLOURS.overdue, "Overdue (halo)", ".halo"), item(COLOURS.waiting, "Waiting for dispatch"),
    item(COLOURS.inwork, "Dispatched / in work"),
    el("strong", { textContent: "Responders" }),
    item(COLOURS.available, "Available"), item(COLOURS.busy, "Busy"),
    item(COLOURS.available, "Stale position (faded)", ".faded"),
    el("strong", { textContent: "Route" }), item(COLOURS.route, "Road route of the highlighted responder", ".line"),
  );
}

// ---------------------------------------------------------------------------------------------
// Data

function sortCases(list) {
  const due = (c) => (c.due_at ? new Date(c.due_at).getTime() : Infinity);
  return list.sort((a, b) => (Number(isOverdue(b)) - Number(isOverdue(a)))
    || (Number(IN_WORK.has(a.status)) - Number(IN_WORK.has(b.status)))
    || due(a) - due(b) || a.id - b.id);
}

async function loadCases() {
  const fc = await api("/api/cases", { params: { status: OPEN_STATUSES.join(","), limit: CASE_LIMIT } });
  state.cases = new Map(fc.features.map((f) => [f.properties.id, f.properties]));
  state.casesTruncated = Boolean(fc.next_cursor);
  if (state.selected && !state.cases.has(state.selected)) {
    // Closed, rejected or redirected meanwhile: keep showing it from the API, not the list.
    const one = await api(`/api/cases/${state.selected}`).catch(() => null);
    if (one) state.cases.set(one.properties.id, { ...one.properties, unlisted: true });
  }
  renderCases();
  scheduleMapRender();
}

async function loadResponders() {
  const fc = await api("/api/responders");
  state.responders = new Map(fc.features.map((f) => [f.properties.id, {
    ...f.properties, lon: f.geometry?.coordinates[0] ?? null, lat: f.geometry?.coordinates[1] ?? null,
  }]));
  scheduleMapRender();
}

async function loadAll() {
  await Promise.all([loadCases(), loadResponders()]);
  if (state.selected) await showCase(state.selected, { fly: false, keepHighlight: true });
}

function renderCounts() {
  const open = [...state.cases.values()].filter((c) => !c.unlisted);
  const overdue = open.filter(isOverdue).length;
  const resp = [...state.responders.values()];
  const available = resp.filter((r) => r.status === "available" && r.lon !== null && !isStale(r)).length;
  const busy = resp.filter((r) => r.status === "busy").length;
  $("#count-open").textContent = `${nf.format(open.length)}${state.casesTruncated ? "+" : ""} open`;
  $("#count-overdue").textContent = `${nf.format(overdue)} overdue`;
  $("#count-overdue").classList.toggle("alert", overdue > 0);
  $("#count-available").textContent = `${nf.format(available)} available`;
  $("#count-busy").textContent = `${nf.format(busy)} busy`;
}

function caseWhen(c) {
  if (!c.due_at) return "";
  const ms = new Date(c.due_at) - Date.now();
  return isOverdue(c) ? `overdue ${duration(-ms)}` : `due in ${duration(ms)}`;
}

function caseItem(c) {
  const kind = isOverdue(c) ? "overdue" : IN_WORK.has(c.status) ? "inwork" : "waiting";
  const b = el("button.case-item", { type: "button", dataset: { caseId: c.id, kind },
    "aria-pressed": String(state.selected === c.id) },
  el(`span.dot.dot-${kind}`, { "aria-hidden": "true" }),
  el("span.case-main", {},
    el("span.case-title", { textContent: `#${c.id} ${c.category_name ?? c.category}` }),
    el("span.case-sub", { textContent: [humanize(c.status), caseWhen(c), c.area_name]
      .filter(Boolean).join(" · ") })),
  isOverdue(c) ? el("span.tag.tag-overdue", { textContent: "Overdue" }) : null);
  b.addEventListener("click", () => showCase(c.id, { fly: true }).catch(showError));
  return el("li", {}, b);
}

function renderCases() {
  const list = sortCases([...state.cases.values()].filter((c) => !c.unlisted));
  $("#case-list").replaceChildren(...(list.length ? list.map(caseItem)
    : [el("li.empty", { textContent: "No open cases." })]));
  $("#cases-info").textContent = state.casesTruncated
    ? `first ${nf.format(list.length)} (more exist; use /cases to filter)` : `${nf.format(list.length)}`;
  renderCounts();
}

// ---------------------------------------------------------------------------------------------
// A case: details, ranking by road ETA, route, dispatch

function renderCase(c) {
  const kind = isOverdue(c) ? "overdue" : IN_WORK.has(c.status) ? "inwork" : "waiting";
  $("#case-title").textContent = `Case #${c.id}`;
  const badge = $("#case-badge");
  badge.className = `badge badge-${kind}`;
  badge.textContent = isOverdue(c) ? `Overdue ${duration(Date.now() - new Date(c.due_at))}`
    : humanize(c.status);
  const responder = c.responder_id ? state.responders.get(c.responder_id) : null;
  $("#case-facts").replaceWith(Object.assign(factsList([
    ["Status", humanize(c.status)],
    ["Category", `${c.category_name ?? ""} (${c.category})`],
    ["Grid", c.area_name ? `${c.area_name} (${c.area_code})` : null],
    ["Department", c.department],
    ["Urgency", c.urgency],
    ["Reported", formatTime(c.reported_at)],
    ["Due", c.due_at ? `${formatTime(c.due_at)} (${caseWhen(c)})` : null],
    ["Responder", c.responder_id ? (responder?.name ?? `#${c.responder_id}`) : null],
  ]), { id: "case-facts" }));
  const desc = $("#case-description");
  desc.hidden = !c.description;
  desc.textContent = c.description ? (c.description.length > 240
    ? `${c.description.slice(0, 237)}…` : c.description) : "";
  $("#case-dept").textContent = c.department ? `department ${c.department}` : "its department";
  $("#same-department").disabled = !c.department;
  $("#case-card").hidden = false;
  $("#case-card").dataset.caseId = c.id;
  $("#case-card").dataset.kind = kind;
}

async function showCase(id, { fly = false, keepHighlight = false } = {}) {
  const changed = state.selected !== id;
  state.selected = id;
  if (changed) {
    state.ranking = [];
    state.rankingFor = null;
    state.highlighted = null;
    message("#dispatch-message", "");
    $("#same-department").checked = false;
  }
  for (const b of document.querySelectorAll(".case-item")) {
    b.setAttribute("aria-pressed", String(Number(b.dataset.caseId) === id));
  }
  let c = state.cases.get(id);
  const fresh = await api(`/api/cases/${id}`).catch((err) => {
    if (!c) throw err;
    return null;
  });
  if (state.selected !== id) return null;
  if (fresh) {
    c = { ...fresh.properties, unlisted: !state.cases.has(id) || state.cases.get(id).unlisted };
    state.cases.set(id, c);
  }
  renderCase(c);
  scheduleMapRender();
  if (fly && c.lon !== null) {
    map.easeTo({ center: [c.lon, c.lat], zoom: Math.max(map.getZoom(), 15), duration: 0 });
  }
  await rankResponders(c, { keepHighlight });
  return c;
}

let rankAbort = null;
async function rankResponders(c, { keepHighlight = false } = {}) {
  rankAbort?.abort();
  const ctrl = new AbortController();
  rankAbort = ctrl;
  const list = $("#ranking");
  if (c.lon === null || c.lon === undefined) {
    list.replaceChildren();
    message("#ranking-message", "This case has no location: responders cannot be ranked.");
    return;
  }
  message("#ranking-message", "Ranking responders by road…", "info");
  let data;
  try {
    data = await api("/api/responders/nearest", { signal: ctrl.signal, params: {
      lon: c.lon, lat: c.lat, k: K, mode: "road", route: true, status: "available",
      department: $("#same-department").checked ? c.department : null } });
  } catch (err) {
    if (err.name === "AbortError") return;
    state.ranking = [];
    list.replaceChildren();
    message("#ranking-message", `Could not rank responders: ${err.message}`);
    scheduleMapRender();
    return;
  }
  if (rankAbort !== ctrl || state.selected !== c.id) return;
  const previous = state.highlighted;
  state.ranking = data.results;
  state.rankingFor = c.id;
  state.highlighted = keepHighlight && data.results.some((r) => r.id === previous) ? previous
    : data.results[0]?.id ?? null;
  if (!data.results.length) {
    message("#ranking-message", `No responder to send: ${data.reason || "none available"}.`);
  } else if (data.reason) {
    message("#ranking-message", `${cap(data.reason)}.`, "info");
  } else {
    message("#ranking-message", "");
  }
  renderRanking(c);
  scheduleMapRender();
  if (state.highlighted !== null) fitRoute();
}

function renderRanking(c) {
  const canDispatch = DISPATCH_ROLES.has(state.me?.role);
  const allowed = DISPATCHABLE.has(c.status);
  const items = state.ranking.map((r, i) => {
    const li = el("li.candidate", { dataset: { responderId: r.id, rank: i + 1 },
      className: `candidate${r.id === state.highlighted ? " highlighted" : ""}` });
    const pick = el("button.pick", { type: "button",
      "aria-label": `Show the route of ${r.name}`, "aria-pressed": String(r.id === state.highlighted) },
    el("span.rank", { textContent: String(i + 1) }),
    el("span.who", {},
      el("span.name", { textContent: r.name }),
      el("span.sub", { textContent: [r.department, humanize(r.kind),
        (r.skills || []).join(", ")].filter(Boolean).join(" · ") })),
    el("span.eta", {},
      el("strong", { textContent: minutes(r.eta_s), className: "eta-value" }),
      el("span.sub", { textContent: `${metres(r.distance_m)} by road`, className: "distance" })));
    pick.addEventListener("click", () => highlight(r.id));
    const send = el("button.primary.dispatch", { type: "button", textContent: "Dispatch",
      disabled: !canDispatch || !allowed || state.dispatching,
      title: !canDispatch ? `your role (${state.me?.role}) cannot dispatch`
        : !allowed ? `a ${humanize(c.status).toLowerCase()} case cannot be dispatched` : "" });
    send.addEventListener("click", () => dispatchTo(c.id, r).catch(showError));
    li.append(pick, send);
    return li;
  });
  $("#ranking").replaceChildren(...items);
  if (state.ranking.length && !allowed) {
    message("#dispatch-message", c.status === "reported" || c.status === "accepted"
      ? "File the case first (立案) on the case list, then dispatch it."
      : `The case is ${humanize(c.status).toLowerCase()}: it cannot be dispatched now.`, "info");
  } else if (state.ranking.length && !canDispatch) {
    message("#dispatch-message", `Signed in as ${state.me?.role}: only dispatchers dispatch.`, "info");
  }
}

function highlight(id) {
  state.highlighted = id;
  for (const li of document.querySelectorAll("#ranking .candidate")) {
    const on = Number(li.dataset.responderId) === id;
    li.classList.toggle("highlighted", on);
    li.querySelector(".pick").setAttribute("aria-pressed", String(on));
  }
  scheduleMapRender();
  fitRoute();
}

function fitRoute() {
  const hit = state.ranking.find((r) => r.id === state.highlighted);
  const c = state.cases.get(state.selected);
  if (!hit || !c) return;
  const box = bboxOfGeometry(hit.route) ?? [[hit.lon, hit.lat], [hit.lon, hit.lat]];
  const b = [[Math.min(box[0][0], c.lon, hit.lon), Math.min(box[0][1], c.lat, hit.lat)],
    [Math.max(box[1][0], c.lon, hit.lon), Math.max(box[1][1], c.lat, hit.lat)]];
  map.fitBounds(b, { padding: PADDING, maxZoom: 17, duration: 0 });
}

async function dispatchTo(caseId, r) {
  if (state.dispatching) return;
  state.dispatching = true;
  for (const b of document.querySelectorAll("#ranking .dispatch")) b.disabled = true;
  message("#dispatch-message", `Dispatching ${r.name}…`, "info");
  try {
    const result = await api(`/api/cases/${caseId}/actions`, { method: "POST",
      json: { action: "dispatch", responder_id: r.id } });
    const eta = result.event?.data?.eta;
    const when = eta?.eta_s !== null && eta?.eta_s !== undefined ? ` — ETA ${minutes(eta.eta_s)}`
      : eta?.reason ? ` (no ETA: ${eta.reason})` : "";
    const rr = state.responders.get(r.id);
    if (rr) rr.status = "busy"; // the live feed confirms; no need to wait for it
    state.cases.set(caseId, { ...state.cases.get(caseId), ...result.case.properties });
    state.dispatching = false;
    await loadCases().catch(() => {});
    await showCase(caseId, { fly: false });
    message("#dispatch-message", `Dispatched ${r.name} to case #${caseId}${when}.`, "ok");
  } catch (err) {
    state.dispatching = false;
    message("#dispatch-message", `Not dispatched: ${err.message}`);
    const c = state.cases.get(caseId);
    if (c) await rankResponders(c, { keepHighlight: true }); // someone may have taken them
  }
}

function clearCase() {
  rankAbort?.abort();
  state.selected = null;
  state.ranking = [];
  state.highlighted = null;
  $("#case-card").hidden = true;
  for (const b of document.querySelectorAll(".case-item")) b.setAttribute("aria-pressed", "false");
  scheduleMapRender();
}

// ---------------------------------------------------------------------------------------------
// Live feed: SSE over fetch (the Authorization header scopes what we may see)

function setLive(on, text) {
  state.live = on;
  const box = $("#live");
  box.classList.toggle("on", on);
  box.replaceChildren(el(`span.live-dot${on ? ".on" : ""}`, { "aria-hidden": "true" }),
    text ?? (on ? `Live · ${new Date().toLocaleTimeString("en-GB")}` : "Reconnecting…"));
}

const reloadTimers = {};
function scheduleReload(what, delay = 300) {
  clearTimeout(reloadTimers[what]);
  reloadTimers[what] = setTimeout(() => {
    const job = what === "cases" ? loadCases() : what === "responders" ? loadResponders() : loadAll();
    job.catch(showError);
  }, delay);
}

let rerankTimer = null;
function onResponderEvent(e) {
  if (e.op === "delete") {
    state.responders.delete(e.id);
  } else {
    const r = state.responders.get(e.id);
    if (!r || (e.changes || []).includes("details")) {
      scheduleReload("responders"); // names and skills come from GET /api/responders
      if (!r) return;
    }
    Object.assign(r, { status: e.status, kind: e.kind ?? r.kind, lon: e.lon, lat: e.lat,
      position_at: e.position_at, stale: false });
  }
  // A ranked responder taken by someone else, or the case's neighbourhood changing: re-rank.
  const c = state.cases.get(state.selected);
  if (c && !state.dispatching && (e.changes || []).includes("status")
      && (state.ranking.some((x) => x.id === e.id) || e.status === "available")) {
    clearTimeout(rerankTimer);
    rerankTimer = setTimeout(() => rankResponders(c, { keepHighlight: true }), 500);
  }
  scheduleMapRender();
}

function handleEvent(type, data) {
  if (type === "hello" || type === "heartbeat") {
    setLive(true);
    return;
  }
  if (type === "resync") {
    scheduleReload("all", 50);
    return;
  }
  if (type === "responder") onResponderEvent(data);
  if (type === "case") {
    scheduleReload("cases");
    if (data.id === state.selected && !state.dispatching) {
      setTimeout(() => showCase(data.id, { keepHighlight: true }).catch(showError), 350);
    }
  }
  setLive(true);
}

async function connectLive() {
  disconnectLive();
  const ctrl = new AbortController();
  live = { ctrl };
  let lastId = null;
  let retry = 3000;
  while (!ctrl.signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${state.token}` };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const resp = await fetch("/api/live?types=responder,case", { headers, signal: ctrl.signal,
        cache: "no-store" });
      if (resp.status === 401 || resp.status === 403) {
        const body = await resp.json().catch(() => ({}));
        setLive(false, `Live feed refused: ${body.detail ?? resp.statusText}`);
        return;
      }
      if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let type = "message";
          const data = [];
          for (const line of block.split("\n")) {
            const at = line.indexOf(":");
            if (at === 0) continue; // comment
            const field = at < 0 ? line : line.slice(0, at);
            const val = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
            if (field === "event") type = val;
            else if (field === "data") data.push(val);
            else if (field === "id") lastId = val;
            else if (field === "retry" && /^\d+$/.test(val)) retry = Number(val);
          }
          if (!data.length) continue;
          let parsed;
          try {
            parsed = JSON.parse(data.join("\n"));
          } catch {
            continue;
          }
          handleEvent(type, parsed);
        }
      }
    } catch (err) {
      if (ctrl.signal.aborted) return;
    }
    if (ctrl.signal.aborted) return;
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, retry));
  }
}

function disconnectLive() {
  live?.ctrl.abort();
  live = null;
}

// ---------------------------------------------------------------------------------------------
// Signing in

async function signIn(token) {
  state.token = token;
  try {
    state.me = await api("/api/me");
  } catch (err) {
    signOut();
    message("#message", err.status === 401 ? `Sign-in failed: ${err.message}` : err.message);
    return false;
  }
  if (!READ_ROLES.has(state.me.role)) {
    const role = state.me.role;
    signOut();
    message("#message", `The ${role} role cannot see responders; sign in as a dispatcher.`);
    return false;
  }
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch { /* storage disabled: this tab only */ }
  $("#login-form").hidden = true;
  $("#whoami").hidden = false;
  $("#who").textContent = `${state.me.name} · ${state.me.role}`;
  message("#message", DISPATCH_ROLES.has(state.me.role) ? ""
    : `Signed in as ${state.me.role}: you can watch, only dispatchers dispatch.`, "info");
  await loadAll();
  fitData();
  connectLive();
  return true;
}

function signOut() {
  disconnectLive();
  state.token = null;
  state.me = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* ignore */ }
  state.cases = new Map();
  state.responders = new Map();
  clearCase();
  $("#login-form").hidden = false;
  $("#whoami").hidden = true;
  $("#case-list").replaceChildren();
  $("#cases-info").textContent = "";
  setLive(false, "Offline");
  message("#message", "Sign in with a dispatcher's token to see cases and responders.", "info");
}

function fitData() {
  const pts = [...caseFeatures(), ...responderFeatures()].map((f) => f.geometry.coordinates);
  if (!pts.length) return;
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  map.fitBounds([[Math.min(...xs), Math.min(...ys)], [Math.max(...xs), Math.max(...ys)]],
    { padding: PADDING, maxZoom: 16, duration: 0 });
}

function showError(err) {
  if (err?.name === "AbortError") return;
  message("#message", err?.message ?? String(err));
}

// ---------------------------------------------------------------------------------------------
// Start

function setupInteraction() {
  const layers = ["dsp-cases", "dsp-responders"];
  map.on("click", (e) => {
    const box = [[e.point.x - 5, e.point.y - 5], [e.point.x + 5, e.point.y + 5]];
    const hits = map.queryRenderedFeatures(box, { layers: layers.filter((l) => map.getLayer(l)) });
    const responder = hits.find((f) => f.layer.id === "dsp-responders");
    if (responder && state.ranking.some((r) => r.id === responder.properties.id)) {
      highlight(responder.properties.id);
      return;
    }
    const c = hits.find((f) => f.layer.id === "dsp-cases");
    if (c) showCase(c.properties.id).catch(showError);
  });
  map.on("mousemove", (e) => {
    const box = [[e.point.x - 5, e.point.y - 5], [e.point.x + 5, e.point.y + 5]];
    const hit = map.queryRenderedFeatures(box, { layers }).length > 0;
    map.getCanvas().style.cursor = hit ? "pointer" : "";
  });
  $("#login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("#token").value.trim();
    if (!token) {
      message("#message", "Paste a bearer token first.");
      return;
    }
    $("#token").value = "";
    signIn(token).catch(showError);
  });
  $("#logout").addEventListener("click", signOut);
  $("#case-close").addEventListener("click", clearCase);
  $("#same-department").addEventListener("change", () => {
    const c = state.cases.get(state.selected);
    if (c) rankResponders(c).catch(showError);
  });
  // Times ("due in 2 h") and staleness move with the clock.
  setInterval(() => {
    if (!state.token) return;
    renderCases();
    scheduleMapRender();
  }, 30_000);
}

async function start() {
  setLive(false, "Offline");
  const style = await loadStyle("default", { role: "public" });
  await createMap(augmentStyle(style));
  renderLegend();
  setupInteraction();
  $("#loading").hidden = true;
  const token = storedToken();
  if (token) await signIn(token);
  else signOut();
}

window.gridgov = {
  map: null,
  state,
  signIn,
  showCase,
  highlight,
  whenIdle: () => whenIdle(map),
  rendered: (layers) => renderedDistinct(map, layers, (f) => f.properties.id).map((f) => ({
    id: f.properties.id, layer: f.layer.id, status: f.properties.status,
    overdue: f.properties.overdue, stale: f.properties.stale })),
};
window.gridgov.ready = start().catch((err) => {
  $("#loading").hidden = true;
  showError(err);
  throw err;
});
