// gridgov planner workbench: draft plans of grid boundaries on a MapLibre map.
//
// Plain ES module, no build step; MapLibre GL JS is the vendored UMD bundle (window.maplibregl)
// and the style has no basemap, glyphs or sprites, so nothing leaves this server. Every edit
// goes to /api/plans/... with the version of each grid the page saw; a 409 means someone else
// changed it first: the page reloads and says so (nothing is lost on the server).
// `window.planner` is the hook the browser tests use: `ready`, `map`, `state` and the actions.

const maplibregl = window.maplibregl;
const $ = (sel) => document.querySelector(sel);
const nf = new Intl.NumberFormat("en");
const pct = (x) => (x === null || x === undefined ? "–" : `${x > 0 ? "+" : ""}${Math.round(x * 100)}%`);
const TOKEN_KEY = "gridgov.planner.token";
const EMPTY = { type: "FeatureCollection", features: [] };
// Deviation from the target: under (blues), within the tolerance (green), over (reds).
const DEV_COLOURS = { under2: "#2171b5", under: "#9ecae1", ok: "#74c476", over: "#fc9272",
  over2: "#cb181d", none: "#d5dbe1" };

const state = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  plan: null,        // plan summary from the API
  features: [],      // all plan areas (GeoJSON features, id = key)
  grids: [],         // the bottom level
  bottom: null,      // rank of the bottom level
  tolerance: 0.1,
  selected: new Set(),
  tool: "select",
  drawing: [],       // [lon, lat] of the line being drawn
  check: null,
  ops: [],
  problems: [],      // GeoJSON features of the problems shown on the map
  diff: null,        // the last diff
  busy: false,
  edit: null,        // vertex editing: { key, polys: [[[lon, lat]…] per ring] per polygon, drag }
  move: { what: "buildings", parent: null, buildings: EMPTY, blocks: EMPTY,
    picked: new Set(), pickedBlocks: new Map(), to: null },
  pending: null,     // an edit refused with 409: { label, fn, geometry }, to apply again
};

class ApiError extends Error {
  constructor(status, body) {
    super(typeof body.detail === "string" ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, { method = "GET", body, form } = {}) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers, body: payload });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function setStatus(text, kind = "") {
  const el = $("#status");
  el.textContent = text;
  el.className = `status ${kind}`;
}

// ---------------------------------------------------------------------------------------------
// Map
const map = new maplibregl.Map({
  container: "map",
  style: { version: 8, sources: {},
    layers: [{ id: "background", type: "background", paint: { "background-color": "#e9edf1" } }] },
  center: [0, 20], zoom: 1, dragRotate: false, pitchWithRotate: false,
  attributionControl: { compact: true, customAttribution: "gridgov" },
});
map.touchZoomRotate.disableRotation();
map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");

function devColour(tol) {
  const d = ["coalesce", ["get", "deviation_households"], -99];
  return ["case", ["==", d, -99], DEV_COLOURS.none,
    ["step", d, DEV_COLOURS.under2, -2 * tol, DEV_COLOURS.under, -tol - 1e-9, DEV_COLOURS.ok,
      tol + 1e-9, DEV_COLOURS.over, 2 * tol, DEV_COLOURS.over2]];
}

const IS_AREA = ["match", ["geometry-type"], ["Polygon", "MultiPolygon"], true, false];
const IS_POINT = ["match", ["geometry-type"], ["Point", "MultiPoint"], true, false];
// Problems whose geometry is the problem itself (filled); the others (deviation, compactness)
// carry the whole grid and are only outlined.
const AREAL_KINDS = ["gap", "overlap", "sliver", "hole", "outside_parent", "multipart",
  "invalid", "empty", "self_intersection", "locked", "not_adjacent", "import"];
const SEVERITY_COLOUR = ["match", ["get", "severity"], "error", "#b42318", "#d98a00"];

function addLayers() {
  for (const id of ["grids", "parents", "buildings", "blocks", "problems", "diff", "pending",
    "edit", "draw"]) {
    map.addSource(id, { type: "geojson", data: EMPTY });
  }
  const w = (a, b) => ["interpolate", ["linear"], ["zoom"], 12, a, 17, b];
  map.addLayer({ id: "grids-fill", type: "fill", source: "grids",
    paint: { "fill-color": devColour(state.tolerance), "fill-opacity": 0.78 } });
  map.addLayer({ id: "grids-outline", type: "line", source: "grids",
    paint: { "line-color": "#ffffff", "line-width": w(1, 2.2) } });
  map.addLayer({ id: "grids-locked", type: "line", source: "grids",
    filter: ["==", ["get", "locked"], true],
    paint: { "line-color": "#1b2733", "line-width": w(1.5, 3), "line-dasharray": [1, 1] } });
  map.addLayer({ id: "parents-outline", type: "line", source: "parents",
    paint: { "line-color": "#203040", "line-width": w(1.6, 3.2), "line-opacity": 0.8 } });
  map.addLayer({ id: "blocks-fill", type: "fill", source: "blocks",
    paint: { "fill-color": "#ffffff", "fill-opacity": 0.01 } });
  map.addLayer({ id: "blocks-outline", type: "line", source: "blocks",
    paint: { "line-color": "#3d4f61", "line-width": 1, "line-dasharray": [3, 2] } });
  map.addLayer({ id: "blocks-selected", type: "fill", source: "blocks",
    filter: ["in", ["id"], ["literal", []]],
    paint: { "fill-color": "#f26b1d", "fill-opacity": 0.45 } });
  map.addLayer({ id: "buildings-fill", type: "fill", source: "buildings",
    paint: { "fill-color": ["case", ["in", ["id"], ["literal", []]], "#f26b1d", "#46505c"],
      "fill-opacity": 0.85 } });
  map.addLayer({ id: "buildings-outline", type: "line", source: "buildings",
    paint: { "line-color": "#ffffff", "line-width": 0.6 } });
  map.addLayer({ id: "diff-old", type: "line", source: "diff",
    filter: ["==", ["get", "role"], "old"],
    paint: { "line-color": "#6b2fa3", "line-width": w(1.5, 3), "line-dasharray": [2, 1.5] } });
  map.addLayer({ id: "problems-fill", type: "fill", source: "problems",
    filter: ["all", IS_AREA, ["in", ["get", "kind"], ["literal", AREAL_KINDS]]],
    paint: { "fill-color": SEVERITY_COLOUR, "fill-opacity": 0.5 } });
  map.addLayer({ id: "problems-line", type: "line", source: "problems",
    filter: ["!", IS_POINT],
    paint: { "line-color": SEVERITY_COLOUR, "line-width": w(2, 4) } });
  map.addLayer({ id: "problems-point", type: "circle", source: "problems",
    filter: IS_POINT,
    paint: { "circle-color": SEVERITY_COLOUR, "circle-radius": 6, "circle-stroke-color": "#fff",
      "circle-stroke-width": 2 } });
  map.addLayer({ id: "problems-focus", type: "line", source: "problems",
    filter: ["==", ["id"], -1],
    paint: { "line-color": "#f26b1d", "line-width": w(3, 6) } });
  map.addLayer({ id: "grids-selected", type: "line", source: "grids",
    filter: ["in", ["id"], ["literal", []]],
    paint: { "line-color": "#f26b1d", "line-width": w(3, 5) } });
  map.addLayer({ id: "pending-line", type: "line", source: "pending",
    paint: { "line-color": "#f26b1d", "line-width": 3, "line-dasharray": [1.5, 1.5] } });
  map.addLayer({ id: "edit-fill", type: "fill", source: "edit", filter: IS_AREA,
    paint: { "fill-color": "#f26b1d", "fill-opacity": 0.15 } });
  map.addLayer({ id: "edit-line", type: "line", source: "edit", filter: IS_AREA,
    paint: { "line-color": "#f26b1d", "line-width": 2.5 } });
  map.addLayer({ id: "edit-mids", type: "circle", source: "edit",
    filter: ["==", ["get", "kind"], "mid"],
    paint: { "circle-color": "#f26b1d", "circle-radius": 4, "circle-opacity": 0.55 } });
  map.addLayer({ id: "edit-vertices", type: "circle", source: "edit",
    filter: ["==", ["get", "kind"], "vertex"],
    paint: { "circle-color": "#fff", "circle-radius": 6, "circle-stroke-color": "#f26b1d",
      "circle-stroke-width": 2.5 } });
  map.addLayer({ id: "draw-fill", type: "fill", source: "draw", filter: IS_AREA,
    paint: { "fill-color": "#f26b1d", "fill-opacity": 0.15 } });
  map.addLayer({ id: "draw-line", type: "line", source: "draw", filter: ["!", IS_POINT],
    paint: { "line-color": "#f26b1d", "line-width": 3, "line-dasharray": [2, 1] } });
  map.addLayer({ id: "draw-points", type: "circle", source: "draw", filter: IS_POINT,
    paint: { "circle-color": "#fff", "circle-radius": 4, "circle-stroke-color": "#f26b1d",
      "circle-stroke-width": 2 } });
}

function whenIdle() {
  return new Promise((resolve) => {
    map.once("idle", resolve);
    map.triggerRepaint();
  });
}

function bboxOf(features) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  const walk = (c) => {
    if (typeof c[0] === "number") {
      x0 = Math.min(x0, c[0]); x1 = Math.max(x1, c[0]);
      y0 = Math.min(y0, c[1]); y1 = Math.max(y1, c[1]);
    } else c.forEach(walk);
  };
  const geom = (g) => (g.type === "GeometryCollection" ? g.geometries.forEach(geom)
    : walk(g.coordinates));
  features.forEach((f) => f.geometry && geom(f.geometry));
  return Number.isFinite(x0) ? [[x0, y0], [x1, y1]] : null;
}

// ---------------------------------------------------------------------------------------------
// Plan loading and rendering
async function loadPlan(id, { fit = false } = {}) {
  const [plan, fc] = await Promise.all([api(`/api/plans/${id}`), api(`/api/plans/${id}/areas`)]);
  state.plan = plan;
  state.ops = plan.ops || [];
  state.features = fc.features;
  state.bottom = Math.max(...fc.features.map((f) => f.properties.level));
  const grid = plan.levels.find((l) => l.rank === state.bottom);
  state.tolerance = grid ? grid.tolerance : 0.1;
  state.grids = fc.features.filter((f) => f.properties.level === state.bottom);
  for (const f of fc.features) f.bbox = bboxOf([f]);
  const keys = new Set(state.grids.map((f) => f.id));
  if (state.move.to !== null && !keys.has(state.move.to)) state.move.to = null;
  state.selected = new Set([...state.selected].filter((k) => keys.has(k)));
  map.getSource("grids").setData({ type: "FeatureCollection", features: state.grids });
  map.getSource("parents").setData({ type: "FeatureCollection",
    features: fc.features.filter((f) => f.properties.level === state.bottom - 1) });
  map.setPaintProperty("grids-fill", "fill-color", devColour(state.tolerance));
  if (grid && grid.target_households) $("#target-input").placeholder = String(grid.target_households);
  renderPlanInfo();
  renderSelection();
  renderLegend();
  renderTable();
  renderMoveTargets();
  if (fit) {
    const b = bboxOf(fc.features);
    if (b) map.fitBounds(b, { padding: 40, duration: 0 });
  }
  await whenIdle();
  return plan;
}

function renderPlanInfo() {
  const p = state.plan;
  const active = state.ops.filter((o) => !o.undone).length;
  $("#plan-info").textContent = p
    ? `#${p.id} · ${p.name} · ${p.status} · ${state.grids.length} grids · ${active} edits`
    : "";
  const draft = p && p.status === "draft";
  $("#undo-btn").disabled = !draft || !state.ops.some((o) => !o.undone);
  $("#redo-btn").disabled = !draft || !state.ops.some((o) => o.undone);
  for (const id of ["#partition-btn", "#check-btn", "#diff-btn", "#publish-btn",
    "#import-btn"]) {
    $(id).disabled = !draft;
  }
  $("#export-btn").disabled = !p;
}

function renderLegend() {
  const t = Math.round(state.tolerance * 100);
  const rows = [["over2", `over +${2 * t}%`], ["over", `+${t}% to +${2 * t}%`],
    ["ok", `within ±${t}% of target`], ["under", `−${t}% to −${2 * t}%`],
    ["under2", `under −${2 * t}%`]];
  $("#dev-legend").replaceChildren(...rows.map(([k, label]) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = DEV_COLOURS[k];
    li.append(sw, document.createTextNode(label));
    return li;
  }));
}

function devCell(d) {
  const span = document.createElement("span");
  span.className = "dev";
  span.textContent = pct(d);
  if (d !== null && d !== undefined) {
    const t = state.tolerance;
    const k = d < -2 * t ? "under2" : d < -t ? "under" : d <= t ? "ok" : d <= 2 * t ? "over" : "over2";
    span.style.background = DEV_COLOURS[k];
    span.dataset.within = String(k === "ok");
  }
  return span;
}

function renderTable() {
  const pp = new Map((state.check?.areas || []).map((r) => [r.key, r.polsby_popper]));
  const rows = [...state.grids].sort((a, b) =>
    (a.properties.code || "~").localeCompare(b.properties.code || "~") || a.id - b.id);
  $("#grid-table tbody").replaceChildren(...rows.map((f) => {
    const p = f.properties;
    const tr = document.createElement("tr");
    tr.dataset.key = String(f.id);
    tr.classList.toggle("selected", state.selected.has(f.id));
    tr.classList.toggle("locked", !!p.locked);
    const cells = [p.code || `new #${f.id}`, nf.format(p.households), null,
      pp.has(f.id) ? pp.get(f.id).toFixed(2) : "–"];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      if (i === 2) td.append(devCell(p.deviation_households));
      else td.textContent = c;
      tr.append(td);
    });
    tr.addEventListener("click", (e) => select(f.id, e.shiftKey));
    return tr;
  }));
}

function renderSelection() {
  map.setFilter("grids-selected", ["in", ["id"], ["literal", [...state.selected]]]);
  document.querySelectorAll("#grid-table tbody tr").forEach((tr) => {
    tr.classList.toggle("selected", state.selected.has(Number(tr.dataset.key)));
  });
  const draft = state.plan && state.plan.status === "draft";
  const one = state.selected.size === 1;
  $("#merge-btn").disabled = !draft || state.selected.size < 2;
  $("#lock-btn").disabled = !draft || !one;
  $("#snap-btn").disabled = !draft || !one;
  if (one) {
    const f = gridByKey([...state.selected][0]);
    $("#lock-btn").textContent = f && f.properties.locked ? "Unlock" : "Lock";
  }
}

function gridByKey(key) {
  return state.grids.find((f) => f.id === key);
}

function select(key, add = false) {
  if (!add) state.selected = new Set();
  if (key !== null && key !== undefined) {
    if (add && state.selected.has(key)) state.selected.delete(key);
    else state.selected.add(key);
  }
  renderSelection();
}

// ---------------------------------------------------------------------------------------------
// Operations
// Operations run one after another (a click while one is running waits for it), so the
// versions each one sends are those the previous one left. Each `fn` reads the versions when
// it runs, so running it again after a reload sends the versions seen now.
let queue = Promise.resolve();

function run(label, fn, opts = {}) {
  const next = queue.then(() => runNow(label, fn, opts));
  queue = next.catch(() => {});
  return next;
}

async function runNow(label, fn, { geometry = null, retry = true } = {}) {
  state.busy = true;
  setStatus(`${label}…`);
  try {
    const out = await fn();
    setStatus(`${label}: done`);
    return out;
  } catch (err) {
    if (err instanceof ApiError && err.status === 409 && state.plan) {
      setStatus(`${err.message} — the plan was reloaded with the other edit.`, "error");
      await loadPlan(state.plan.id);
      if (retry) showConflict(label, fn, geometry, err);
    } else if (err instanceof ApiError && err.status === 401) {
      setStatus("Sign in with a planner token first.", "error");
    } else {
      setStatus(err.message, "error");
      if (err instanceof ApiError && err.body.geometry) {
        showProblems([{ geometry: err.body.geometry, severity: "error",
          kind: err.body.problem || "invalid", message: err.message }]);
      }
    }
    throw err;
  } finally {
    state.busy = false;
  }
}

// A 409: someone else changed a grid this edit touches. Nothing was written; the page now
// shows their edit, keeps ours (dashed) and offers to apply it again on top of theirs.
function showConflict(label, fn, geometry, err) {
  state.pending = { label, fn, geometry, message: err.message };
  $("#conflict-text").textContent = err.message;
  $("#conflict").hidden = false;
  $("#conflict").scrollIntoView({ block: "nearest" });
  map.getSource("pending").setData(geometry
    ? { type: "FeatureCollection", features: [{ type: "Feature", geometry, properties: {} }] }
    : EMPTY);
}

function clearConflict() {
  state.pending = null;
  $("#conflict").hidden = true;
  map.getSource("pending").setData(EMPTY);
}

async function retryPending() {
  const p = state.pending;
  if (!p) return undefined;
  clearConflict();
  const out = await run(p.label, p.fn, { geometry: p.geometry });
  setTool("select");
  return out;
}

async function afterEdit() {
  showProblems([]);
  await loadPlan(state.plan.id);
  if (state.tool === "move") await loadMoveData();
  await check({ quiet: true });
}

function versionOf(key) {
  const f = gridByKey(key);
  return f ? f.properties.version : undefined;
}

async function createPlan(root) {
  return run("Creating the plan", async () => {
    const plan = await api("/api/plans", { method: "POST", body: { root } });
    state.selected = new Set();
    clearConflict();
    await loadPlan(plan.id, { fit: true });
    await refreshPlanList();
    $("#plan-select").value = String(plan.id);
    await check({ quiet: true });
    return plan;
  }, { retry: false });
}

async function openPlan(id) {
  return run("Opening the plan", async () => {
    state.selected = new Set();
    clearConflict();
    const plan = await loadPlan(id, { fit: true });
    await check({ quiet: true });
    return plan;
  }, { retry: false });
}

async function reshape(key, geometry) {
  return run("Reshaping", async () => {
    const out = await api(`/api/plans/${state.plan.id}/areas/${key}/reshape`, {
      method: "POST", body: { geometry, version: versionOf(key) } });
    await afterEdit();
    return out;
  }, { geometry });
}

async function carve(parent, geometry) {
  return run("Drawing a new grid", async () => {
    const versions = Object.fromEntries(state.grids
      .filter((f) => f.properties.parent_key === parent)
      .map((f) => [f.id, f.properties.version]));
    const out = await api(`/api/plans/${state.plan.id}/areas`, {
      method: "POST", body: { parent, geometry, versions } });
    state.selected = new Set(out.created);
    await afterEdit();
    return out;
  }, { geometry });
}

async function split(key, coordinates) {
  const line = { type: "LineString", coordinates };
  return run("Splitting", async () => {
    const out = await api(`/api/plans/${state.plan.id}/areas/${key}/split`, {
      method: "POST", body: { line, version: versionOf(key) } });
    await afterEdit();
    return out;
  }, { geometry: line });
}

async function merge(keys) {
  return run("Merging", async () => {
    const versions = Object.fromEntries(keys.map((k) => [k, versionOf(k)]));
    const out = await api(`/api/plans/${state.plan.id}/merge`,
      { method: "POST", body: { keys, versions } });
    state.selected = new Set([out.updated[0]]);
    await afterEdit();
    return out;
  });
}

async function toggleLock(key) {
  return run("Locking", async () => {
    const f = gridByKey(key);
    const out = await api(`/api/plans/${state.plan.id}/areas/${key}`, { method: "PATCH",
      body: { locked: !f.properties.locked, version: f.properties.version } });
    await afterEdit();
    return out;
  });
}

async function snap(key) {
  return run("Snapping to roads", async () => {
    const out = await api(`/api/plans/${state.plan.id}/areas/${key}/snap`,
      { method: "POST", body: { version: versionOf(key) } });
    await afterEdit();
    return out;
  });
}

async function moveBuildings(to, ids) {
  return run("Moving buildings", async () => {
    const from = new Set(ids.map((id) => buildingById(id)?.properties.grid).filter((k) => k));
    const versions = Object.fromEntries([...from, to].map((k) => [k, versionOf(k)]));
    const out = await api(`/api/plans/${state.plan.id}/move`, {
      method: "POST", body: { to, version: versionOf(to), versions, buildings: ids } });
    state.move.picked = new Set();
    await afterEdit();
    return out;
  }, { geometry: pickedGeometry(ids) });
}

async function moveBlocks(to, points) {
  return run("Moving blocks", async () => {
    const from = new Set(points.map((p) => gridAt(p)?.id).filter((k) => k !== undefined));
    const versions = Object.fromEntries([...from, to].map((k) => [k, versionOf(k)]));
    const out = await api(`/api/plans/${state.plan.id}/move`, {
      method: "POST", body: { to, version: versionOf(to), versions, blocks: points } });
    state.move.pickedBlocks = new Map();
    await afterEdit();
    return out;
  });
}

async function undoRedo(which) {
  return run(which === "undo" ? "Undoing" : "Redoing", async () => {
    const out = await api(`/api/plans/${state.plan.id}/${which}`, { method: "POST" });
    await afterEdit();
    return out;
  }, { retry: false });
}

function partitionParent() {
  const parents = state.features.filter((f) => f.properties.level === state.bottom - 1);
  if (state.selected.size) {
    const g = gridByKey([...state.selected][0]);
    if (g && g.properties.parent_key) return g.properties.parent_key;
  }
  const root = state.features.find((f) => f.properties.parent_key === null);
  return parents.length === 1 ? parents[0].id : root.id;
}

async function partition({ target, tolerance, n, seed = 0, parent } = {}) {
  return run("Partitioning", async () => {
    const body = { parent: parent ?? partitionParent(), seed };
    if (n) body.n = n;
    else if (target) body.target = target;
    if (tolerance !== undefined && tolerance !== null && tolerance !== "") body.tolerance = tolerance;
    try {
      const out = await api(`/api/plans/${state.plan.id}/partition`, { method: "POST", body });
      const m = out.metrics;
      $("#partition-result").className = "small";
      $("#partition-result").textContent =
        `${m.count} grids in ${out.seconds.toFixed(2)} s · worst deviation ${pct(m.max_abs_deviation)}`
        + ` · mean Polsby-Popper ${m.mean_polsby_popper.toFixed(2)}`
        + ` · along roads ${Math.round((m.road_share || 0) * 100)}%`;
      state.selected = new Set();
      await afterEdit();
      return out;
    } catch (err) {
      $("#partition-result").textContent = err.message;
      $("#partition-result").className = "small bad";
      throw err;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Checks: every problem is drawn with its geometry (errors red, warnings amber); a problem
// clicked in the list is outlined and zoomed to.
function showProblems(problems) {
  // Feature id = the problem's place in the list, so the list and the map point at each other.
  state.problems = problems.map((p, i) => (p && p.geometry ? {
    type: "Feature", id: i, geometry: p.geometry,
    properties: { severity: p.severity || "error", kind: p.kind || "invalid",
      message: p.message || "" } } : null)).filter(Boolean);
  map.getSource("problems").setData({ type: "FeatureCollection", features: state.problems });
  map.setFilter("problems-focus", ["==", ["id"], -1]);
}

function focusProblem(index, keys = []) {
  const f = state.problems.find((x) => x.id === index);
  map.setFilter("problems-focus", ["==", ["id"], f ? index : -1]);
  // Problems about whole grids (deviation) carry no geometry of their own: show the grids.
  const shown = f ? [f] : keys.map(gridByKey).filter(Boolean);
  if (!f && shown.length) {
    state.selected = new Set(shown.map((g) => g.id));
    renderSelection();
  }
  const b = bboxOf(shown);
  if (b) map.fitBounds(b, { padding: 80, maxZoom: 18, duration: 0 });
  document.querySelectorAll(".problems li").forEach((li) => {
    li.classList.toggle("selected", Number(li.dataset.index) === index);
  });
}

function renderCheck(result, box = $("#check-result")) {
  state.check = result;
  const s = result.summary;
  const head = document.createElement("p");
  const verdict = document.createElement("span");
  verdict.className = result.ok ? "ok" : "bad";
  verdict.textContent = result.ok ? "No errors" : `${s.errors} error(s)`;
  head.append(verdict, ` · ${s.warnings} warning(s)`);
  if (s.mean_polsby_popper !== undefined) {
    head.append(` · mean Polsby-Popper ${(s.mean_polsby_popper ?? 0).toFixed(2)} · Reock `
      + `${(s.mean_reock ?? 0).toFixed(2)} · along roads ${Math.round((s.road_share ?? 0) * 100)}%`);
  }
  const shown = result.problems.slice(0, 200);
  const list = document.createElement("ul");
  list.className = "problems";
  shown.forEach((p, i) => {
    const li = document.createElement("li");
    li.className = p.severity;
    li.dataset.kind = p.kind;
    li.dataset.index = String(i);
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = p.kind;
    li.append(kind, p.message);
    li.addEventListener("click", () => focusProblem(i, p.keys || []));
    list.append(li);
  });
  box.replaceChildren(head, list);
  showProblems(shown);
  renderTable();
  return result;
}

async function check({ quiet = false } = {}) {
  const result = renderCheck(await api(`/api/plans/${state.plan.id}/check`));
  if (!quiet) setStatus(result.ok ? "Checks passed" : "Checks found problems");
  return result;
}

async function diff() {
  return run("Comparing with the boundaries in force", async () => {
    const d = await api(`/api/plans/${state.plan.id}/diff`);
    state.diff = d;
    map.getSource("diff").setData(d.features);
    const g = d.grids;
    $("#diff-result").textContent = `${g.new.length} new, ${g.changed.length} changed,`
      + ` ${g.removed.length} removed, ${g.unchanged} unchanged grids ·`
      + ` ${nf.format(d.buildings_moved)} buildings / ${nf.format(d.households_moved)} households`
      + ` change grid · ${d.open_cases.affected} open cases affected`;
    return d;
  }, { retry: false });
}

async function publish() {
  return run("Publishing", async () => {
    const out = await api(`/api/plans/${state.plan.id}/publish`, { method: "POST" });
    await loadPlan(state.plan.id);
    setStatus(`Published at ${out.published_at}: ${out.inserted} areas versioned,`
      + ` new codes ${out.new_codes.join(", ") || "none"}, ${out.cases_moved} cases moved`);
    await refreshPlanList();
    return out;
  }, { retry: false }).catch((err) => {
    // Publishing a plan that fails its checks: every error, with its geometry, on the map.
    if (err instanceof ApiError && Array.isArray(err.body.problems)) {
      renderCheck({ ok: false, summary: { errors: err.body.problems.length, warnings: 0 },
        problems: err.body.problems.map((p) => ({ severity: "error", ...p })) });
    }
    throw err;
  });
}

// ---------------------------------------------------------------------------------------------
// Files: download the plan (the token goes in a header, so the file is fetched and handed to
// the browser as a blob) and import one, then show its check on the map.
async function exportPlan(format) {
  return run("Exporting", async () => {
    const resp = await fetch(`/api/plans/${state.plan.id}/export?format=${format}`,
      { headers: { Authorization: `Bearer ${state.token}` } });
    if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => ({})));
    const blob = await resp.blob();
    const disposition = resp.headers.get("Content-Disposition") || "";
    const name = (/filename="([^"]+)"/.exec(disposition) || [])[1]
      || `plan-${state.plan.id}.${format === "shp" ? "zip" : format}`;
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    return { name, bytes: blob.size };
  }, { retry: false });
}

async function importPlan(file) {
  const box = $("#import-result");
  return run(`Importing ${file.name}`, async () => {
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const out = await api(`/api/plans/${state.plan.id}/import`, { method: "POST", form });
      await loadPlan(state.plan.id);
      // The import answers with the plan's check; fetching it whole adds the per-grid measures.
      await check({ quiet: true }).catch(() => renderCheck(out.check));
      const p = document.createElement("p");
      p.textContent = `${out.file}: ${out.imported} grids imported, ${out.replaced} replaced`
        + ` (source CRS ${out.source_crs}) · ${out.check.ok ? "checks pass" : "checks found errors"}`
        + (out.warnings.length ? ` · ${out.warnings.join("; ")}` : "");
      p.className = out.check.ok ? "" : "bad";
      box.replaceChildren(p);
      setStatus(out.check.ok ? "Imported; checks pass"
        : "Imported; the checks found problems (shown on the map)", out.check.ok ? "" : "error");
      return out;
    } catch (err) {
      if (err instanceof ApiError && Array.isArray(err.body.problems)) {
        // Rejected whole: list every problem, and put those with a place on the map.
        const p = document.createElement("p");
        p.className = "bad";
        p.textContent = err.message;
        const list = document.createElement("ul");
        list.className = "import-problems";
        const located = [];
        for (const q of err.body.problems) {
          const li = document.createElement("li");
          li.textContent = `${q.feature !== null && q.feature !== undefined ? `feature ${q.feature}: ` : ""}`
            + `${q.message}`;
          if (Array.isArray(q.where)) {
            const index = located.length;
            located.push({ geometry: { type: "Point", coordinates: q.where }, severity: "error",
              kind: q.problem, message: q.message });
            li.addEventListener("click", () => focusProblem(index));
          }
          list.append(li);
        }
        box.replaceChildren(p, list);
        showProblems(located);
      } else {
        box.textContent = err.message;
        box.className = "small bad";
      }
      throw err;
    }
  }, { retry: false });
}

// ---------------------------------------------------------------------------------------------
// Geometry helpers for the tools
function eachCoord(geometry, fn) {
  const walk = (c) => (typeof c[0] === "number" ? fn(c) : c.forEach(walk));
  if (!geometry) return;
  if (geometry.type === "GeometryCollection") geometry.geometries.forEach((g) => eachCoord(g, fn));
  else walk(geometry.coordinates);
}

function inRing(pt, ring) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if ((yi > pt[1]) !== (yj > pt[1]) && pt[0] < ((xj - xi) * (pt[1] - yi)) / (yj - yi) + xi) {
      inside = !inside;
    }
  }
  return inside;
}

function inGeometry(pt, geometry) {
  const polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  return polys.some((rings) => inRing(pt, rings[0]) && !rings.slice(1).some((r) => inRing(pt, r)));
}

function gridAt(pt) {
  return state.grids.find((f) => f.geometry && inGeometry(pt, f.geometry));
}

// Clicked points land on the nearest existing vertex within 10 px (of any area of the plan),
// so a drawn edge meets its neighbour exactly instead of leaving a sliver.
function snapCoord(c, px = 10) {
  const p = map.project(c);
  const a = map.unproject([p.x - px, p.y + px]);
  const b = map.unproject([p.x + px, p.y - px]);
  let best = null;
  let bestD = px * px;
  for (const f of state.features) {
    const bb = f.bbox;
    if (!bb || bb[1][0] < a.lng || bb[0][0] > b.lng || bb[1][1] < a.lat || bb[0][1] > b.lat) continue;
    eachCoord(f.geometry, (q) => {
      if (q[0] < a.lng || q[0] > b.lng || q[1] < a.lat || q[1] > b.lat) return;
      const s = map.project(q);
      const d = (s.x - p.x) ** 2 + (s.y - p.y) ** 2;
      if (d < bestD) { bestD = d; best = q; }
    });
  }
  return best ? [best[0], best[1]] : c;
}

function screenDistance(a, b) {
  const p = map.project(a);
  const q = map.project(b);
  return Math.hypot(p.x - q.x, p.y - q.y);
}

// ---------------------------------------------------------------------------------------------
// Tools: select, reshape (draw a new outline), edit vertices, new grid (carve), split, move
const HINTS = {
  split: "Click to draw a line across a grid · double-click or Enter to cut · Backspace removes a point · Esc stops",
  reshape: "Click the new outline of the selected grid · double-click, Enter or click the first point to finish · Esc stops",
  carve: "Click the outline of the new grid inside a community · double-click, Enter or click the first point to finish",
  edit: "Drag a vertex · drag a midpoint to add one · double-click a vertex to remove it",
  move: "Click buildings (shift-click adds) · shift-drag a box to pick many · click a grid's open ground to make it the receiver",
  moveBlocks: "Click road blocks to pick them (again to drop) · choose the receiving grid in the panel",
};
const DRAW_TOOLS = new Set(["split", "reshape", "carve"]);

function setTool(tool) {
  if (state.tool === "move" && tool !== "move") leaveMove();
  state.tool = tool;
  state.drawing = [];
  state.edit = null;
  drawPreview();
  renderEdit();
  document.querySelectorAll("[data-tool]").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  });
  const wrap = $(".map-wrap");
  wrap.classList.toggle("drawing", DRAW_TOOLS.has(tool));
  wrap.classList.toggle("editing", tool === "edit");
  wrap.classList.toggle("moving", tool === "move");
  if (tool === "select" || tool === "move") map.doubleClickZoom.enable();
  else map.doubleClickZoom.disable();
  const one = state.selected.size === 1 ? [...state.selected][0] : null;
  let text = HINTS[tool] || "";
  if ((tool === "reshape" || tool === "edit") && one === null) {
    text = "Click the grid to " + (tool === "edit" ? "edit" : "reshape") + " first";
  }
  showHint(text, { apply: tool === "edit" || (DRAW_TOOLS.has(tool) && tool !== "split"),
    cancel: tool !== "select" });
  if (tool === "edit" && one !== null) startEdit(one);
  if (tool === "move") enterMove().catch(() => {});
}

function showHint(text, { apply = false, cancel = false } = {}) {
  const hint = $("#hint");
  hint.hidden = !text;
  $("#hint-text").textContent = text;
  $("#hint-apply").hidden = !apply;
  $("#hint-cancel").hidden = !cancel;
}

function drawPreview(cursor) {
  const pts = cursor ? [...state.drawing, cursor] : state.drawing;
  const features = pts.map((c) => ({ type: "Feature", geometry: { type: "Point", coordinates: c },
    properties: {} }));
  if (state.tool !== "split" && pts.length > 2) {
    features.push({ type: "Feature", properties: {},
      geometry: { type: "Polygon", coordinates: [[...pts, pts[0]]] } });
  } else if (pts.length > 1) {
    features.push({ type: "Feature", geometry: { type: "LineString", coordinates: pts },
      properties: {} });
  }
  map.getSource("draw")?.setData({ type: "FeatureCollection", features });
}

function addDrawPoint(lngLat) {
  const c = snapCoord([lngLat.lng, lngLat.lat]);
  const pts = state.drawing;
  // Clicking the first point again closes a polygon.
  if (state.tool !== "split" && pts.length > 2 && screenDistance(pts[0], c) < 8) {
    finishDrawing();
    return;
  }
  const last = pts[pts.length - 1];
  if (!last || screenDistance(last, c) >= 3) pts.push(c);  // a double-click adds one point
  drawPreview();
}

async function finishDrawing() {
  const coords = state.drawing.slice();
  state.drawing = [];
  drawPreview();
  if (state.tool === "split") return finishLine(coords);
  if (coords.length < 3) {
    setStatus("A shape needs at least three points.", "error");
    return undefined;
  }
  const geometry = { type: "Polygon", coordinates: [[...coords, coords[0]]] };
  if (state.tool === "reshape") {
    const key = state.selected.size === 1 ? [...state.selected][0] : null;
    if (key === null) {
      setStatus("Select the grid to reshape first.", "error");
      return undefined;
    }
    const out = await reshape(key, geometry).catch(() => null);
    if (out) setTool("select");
    return out;
  }
  if (state.tool === "carve") {
    const n = coords.length;
    const centre = [coords.reduce((a, c) => a + c[0], 0) / n, coords.reduce((a, c) => a + c[1], 0) / n];
    const parents = state.features.filter((f) => f.properties.level === state.bottom - 1);
    const parent = parents.find((f) => inGeometry(centre, f.geometry))
      || parents.find((f) => inGeometry(coords[0], f.geometry));
    if (!parent) {
      setStatus("Draw the new grid inside a community of the plan.", "error");
      return undefined;
    }
    const out = await carve(parent.id, geometry).catch(() => null);
    if (out) setTool("select");
    return out;
  }
  return undefined;
}

async function finishLine(coords) {
  if (coords.length < 2) return;
  let key = state.selected.size === 1 ? [...state.selected][0] : null;
  if (key === null) {
    const mid = coords[Math.floor((coords.length - 1) / 2)];
    const next = coords[Math.floor((coords.length - 1) / 2) + 1];
    const hit = gridAt([(mid[0] + next[0]) / 2, (mid[1] + next[1]) / 2]);
    key = hit ? hit.id : null;
  }
  if (key === null) {
    setStatus("Draw the line across a grid (or select the grid first).", "error");
    return;
  }
  await split(key, coords).catch(() => {});
  setTool("select");
}

// --- vertex editing ---------------------------------------------------------------------------
function startEdit(key) {
  const f = gridByKey(key);
  if (!f) return;
  const g = f.geometry;
  const polys = (g.type === "Polygon" ? [g.coordinates] : g.coordinates)
    .map((rings) => rings.map((ring) => ring.slice(0, -1).map((c) => [c[0], c[1]])));
  state.edit = { key, polys, drag: null, changed: false };
  showHint(HINTS.edit, { apply: true, cancel: true });
  renderEdit();
}

function editGeometry() {
  const polys = state.edit.polys.map((rings) => rings.map((r) => [...r, r[0]]));
  return polys.length === 1 ? { type: "Polygon", coordinates: polys[0] }
    : { type: "MultiPolygon", coordinates: polys };
}

function renderEdit() {
  const src = map.getSource("edit");
  if (!src) return;
  if (!state.edit) { src.setData(EMPTY); return; }
  const features = [{ type: "Feature", geometry: editGeometry(), properties: { kind: "shape" } }];
  state.edit.polys.forEach((rings, p) => rings.forEach((ring, r) => ring.forEach((c, i) => {
    features.push({ type: "Feature", geometry: { type: "Point", coordinates: c },
      properties: { kind: "vertex", p, r, i } });
    const d = ring[(i + 1) % ring.length];
    features.push({ type: "Feature", properties: { kind: "mid", p, r, i },
      geometry: { type: "Point", coordinates: [(c[0] + d[0]) / 2, (c[1] + d[1]) / 2] } });
  })));
  src.setData({ type: "FeatureCollection", features });
}

function onEditDown(e) {
  if (!state.edit || state.tool !== "edit" || state.edit.drag) return;
  const hit = e.features && e.features[0];
  if (!hit) return;
  e.preventDefault();  // no map panning while a vertex is dragged
  const { p, r, i } = hit.properties;
  const ring = state.edit.polys[p][r];
  let index = i;
  if (hit.properties.kind === "mid") {
    index = i + 1;
    ring.splice(index, 0, [e.lngLat.lng, e.lngLat.lat]);
  }
  state.edit.drag = { p, r, i: index };
  renderEdit();
}

function onEditMove(e) {
  const drag = state.edit && state.edit.drag;
  if (!drag) return;
  state.edit.polys[drag.p][drag.r][drag.i] = snapCoord([e.lngLat.lng, e.lngLat.lat]);
  state.edit.changed = true;
  renderEdit();
}

function onEditUp() {
  if (state.edit && state.edit.drag) {
    state.edit.drag = null;
    state.edit.changed = true;
    renderEdit();
  }
}

function onEditDblClick(e) {
  if (!state.edit) return;
  const hit = e.features && e.features[0];
  if (!hit) return;
  e.preventDefault();
  const { p, r, i } = hit.properties;
  const ring = state.edit.polys[p][r];
  if (ring.length <= 3) {
    setStatus("A ring needs at least three vertices.", "error");
    return;
  }
  ring.splice(i, 1);
  state.edit.changed = true;
  renderEdit();
}

async function applyEdit() {
  if (!state.edit) return undefined;
  if (!state.edit.changed) {
    setStatus("Drag a vertex first.", "error");
    return undefined;
  }
  const out = await reshape(state.edit.key, editGeometry()).catch(() => null);
  if (out) setTool("select");
  return out;
}

// --- move buildings or blocks ------------------------------------------------------------------
function moveParent() {
  // The buildings of the selected grid's community, or of the plan's frame.
  const one = state.selected.size ? gridByKey([...state.selected][0]) : null;
  if (one && one.properties.parent_key !== null) return one.properties.parent_key;
  const root = state.features.find((f) => f.properties.parent_key === null);
  return root ? root.id : null;
}

async function enterMove() {
  $("#move-card").hidden = false;
  map.boxZoom.disable();
  if (state.selected.size === 1 && state.move.to === null) state.move.to = [...state.selected][0];
  renderMoveTargets();
  await loadMoveData();
}

function leaveMove() {
  $("#move-card").hidden = true;
  map.boxZoom.enable();
  state.move.picked = new Set();
  state.move.pickedBlocks = new Map();
  map.getSource("buildings").setData(EMPTY);
  map.getSource("blocks").setData(EMPTY);
}

async function loadMoveData() {
  if (!state.plan) return;
  const parent = moveParent();
  if (parent === null) return;
  state.move.parent = parent;
  const id = state.plan.id;
  try {
    if (state.move.what === "buildings") {
      state.move.buildings = await api(`/api/plans/${id}/buildings?parent=${parent}`);
      state.move.blocks = EMPTY;
    } else {
      state.move.blocks = await api(`/api/plans/${id}/blocks?parent=${parent}`);
    }
  } catch (err) {
    setStatus(err.message, "error");
    return;
  }
  const ids = new Set(state.move.buildings.features.map((f) => f.id));
  state.move.picked = new Set([...state.move.picked].filter((b) => ids.has(b)));
  map.getSource("buildings").setData(state.move.what === "buildings" ? state.move.buildings : EMPTY);
  map.getSource("blocks").setData(state.move.what === "blocks" ? state.move.blocks : EMPTY);
  renderPicked();
}

function buildingById(id) {
  return state.move.buildings.features.find((f) => f.id === id);
}

function pickedGeometry(ids) {
  const polys = [];
  for (const id of ids) {
    const g = buildingById(id)?.geometry;
    if (g) polys.push(...(g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : []));
  }
  return polys.length ? { type: "MultiPolygon", coordinates: polys } : null;
}

function renderMoveTargets() {
  const sel = $("#move-to");
  if (!sel) return;
  const rows = [...state.grids].sort((a, b) =>
    (a.properties.code || "~").localeCompare(b.properties.code || "~") || a.id - b.id);
  sel.replaceChildren(new Option("Into grid…", ""), ...rows.map((f) =>
    new Option(`${f.properties.code || `new #${f.id}`} · ${nf.format(f.properties.households)} hh`,
      String(f.id))));
  sel.value = state.move.to !== null ? String(state.move.to) : "";
  renderPicked();
}

function renderPicked() {
  const m = state.move;
  let text = "Nothing picked.";
  let count = 0;
  let households = 0;
  if (m.what === "buildings") {
    const picked = [...m.picked].map(buildingById).filter(Boolean);
    count = picked.length;
    households = picked.reduce((a, f) => a + f.properties.households, 0);
    const residents = picked.reduce((a, f) => a + f.properties.residents, 0);
    if (count) {
      text = `${count} building${count > 1 ? "s" : ""} · ${nf.format(households)} households`
        + ` · ${nf.format(residents)} residents`;
    }
    map.setPaintProperty("buildings-fill", "fill-color",
      ["case", ["in", ["id"], ["literal", [...m.picked]]], "#f26b1d", "#46505c"]);
  } else {
    count = m.pickedBlocks.size;
    if (count) text = `${count} road block${count > 1 ? "s" : ""}`;
    map.setFilter("blocks-selected", ["in", ["id"], ["literal", [...m.pickedBlocks.keys()]]]);
  }
  $("#move-picked").textContent = text;
  const to = m.to !== null ? gridByKey(m.to) : null;
  $("#move-btn").disabled = !count || !to || !(state.plan && state.plan.status === "draft");
  let preview = "";
  if (to && m.what === "buildings" && count) {
    const moving = [...m.picked].map(buildingById)
      .filter((f) => f && f.properties.grid !== to.id)
      .reduce((a, f) => a + f.properties.households, 0);
    const after = to.properties.households + moving;
    const target = (state.plan.levels.find((l) => l.rank === state.bottom) || {}).target_households;
    preview = `${to.properties.code || `new #${to.id}`}: ${nf.format(to.properties.households)} →`
      + ` ${nf.format(after)} households` + (target ? ` (${pct((after - target) / target)})` : "");
  }
  $("#move-preview").textContent = preview;
}

function pickBuilding(id, add) {
  const picked = state.move.picked;
  if (add) {
    if (picked.has(id)) picked.delete(id); else picked.add(id);
  } else {
    state.move.picked = picked.size === 1 && picked.has(id) ? new Set() : new Set([id]);
  }
  renderPicked();
}

function onMoveClick(e) {
  const m = state.move;
  if (m.what === "buildings") {
    const hit = map.queryRenderedFeatures(e.point, { layers: ["buildings-fill"] })[0];
    if (hit) { pickBuilding(hit.id, e.originalEvent.shiftKey); return; }
  } else {
    const hit = map.queryRenderedFeatures(e.point, { layers: ["blocks-fill"] })[0];
    if (hit) {
      if (m.pickedBlocks.has(hit.id)) m.pickedBlocks.delete(hit.id);
      else m.pickedBlocks.set(hit.id, [e.lngLat.lng, e.lngLat.lat]);
      renderPicked();
      return;
    }
  }
  const grid = gridAt([e.lngLat.lng, e.lngLat.lat]);
  if (grid) {
    m.to = grid.id;
    $("#move-to").value = String(grid.id);
    renderPicked();
  }
}

// Shift-drag draws a box; every building it touches is picked.
let box = null;

function onMoveDown(e) {
  if (state.tool !== "move" || !e.originalEvent.shiftKey || state.move.what !== "buildings") return;
  e.preventDefault();
  box = { start: e.point, end: e.point };
  drawBox();
}

function onMoveDrag(e) {
  if (!box) return;
  box.end = e.point;
  drawBox();
}

function onMoveUp() {
  if (!box) return;
  const { start, end } = box;
  box = null;
  drawBox();
  if (Math.abs(start.x - end.x) < 3 && Math.abs(start.y - end.y) < 3) return;  // a shift-click
  const hits = map.queryRenderedFeatures([[Math.min(start.x, end.x), Math.min(start.y, end.y)],
    [Math.max(start.x, end.x), Math.max(start.y, end.y)]], { layers: ["buildings-fill"] });
  for (const f of hits) state.move.picked.add(f.id);
  renderPicked();
}

function drawBox() {
  const el = $("#boxsel");
  if (!box) { el.hidden = true; return; }
  el.hidden = false;
  el.style.left = `${Math.min(box.start.x, box.end.x)}px`;
  el.style.top = `${Math.min(box.start.y, box.end.y)}px`;
  el.style.width = `${Math.abs(box.end.x - box.start.x)}px`;
  el.style.height = `${Math.abs(box.end.y - box.start.y)}px`;
}

async function moveSelected() {
  const m = state.move;
  if (m.to === null) return undefined;
  if (m.what === "buildings") return moveBuildings(m.to, [...m.picked]);
  return moveBlocks(m.to, [...m.pickedBlocks.values()]);
}

function onMapClick(e) {
  if (!state.plan) return;
  if (DRAW_TOOLS.has(state.tool)) {
    if (state.tool === "reshape" && state.selected.size !== 1) {
      const hit = gridAt([e.lngLat.lng, e.lngLat.lat]);
      if (hit) { select(hit.id); setTool("reshape"); }
      return;
    }
    addDrawPoint(e.lngLat);
    return;
  }
  if (state.tool === "move") { onMoveClick(e); return; }
  if (state.tool === "edit") {
    if (!state.edit) {
      const hit = gridAt([e.lngLat.lng, e.lngLat.lat]);
      if (hit) { select(hit.id); startEdit(hit.id); }
    }
    return;
  }
  const hit = map.queryRenderedFeatures(e.point, { layers: ["grids-fill"] })[0];
  select(hit ? hit.id : null, e.originalEvent.shiftKey);
}

function cancelTool() {
  setTool("select");
}

// ---------------------------------------------------------------------------------------------
// Wiring
async function refreshPlanList() {
  if (!state.token) return;
  try {
    const { plans } = await api("/api/plans", {});
    const sel = $("#plan-select");
    const current = sel.value;
    sel.replaceChildren(new Option("Open a plan…", ""), ...plans.filter((p) => p.status !== "discarded")
      .map((p) => new Option(`#${p.id} ${p.name} (${p.status})`, String(p.id))));
    sel.value = current;
  } catch (err) {
    if (err.status === 401) setStatus("That token was refused.", "error");
  }
}

async function loadRootOptions() {
  const opts = [];
  for (const level of ["street", "community"]) {
    try {
      const fc = await api(`/api/areas?level=${level}`);
      for (const f of fc.features) opts.push(new Option(`${f.properties.name} (${level})`, f.properties.code));
    } catch { /* a jurisdiction without that level */ }
  }
  $("#root-options").replaceChildren(...opts);
}

function signIn(token) {
  state.token = token.trim();
  localStorage.setItem(TOKEN_KEY, state.token);
  $("#token-form").classList.toggle("signed-in", !!state.token);
  $("#token-input").value = state.token;
  return refreshPlanList();
}

function wire() {
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("#token-input").value);
  });
  $("#new-plan").addEventListener("submit", (e) => {
    e.preventDefault();
    createPlan($("#root-input").value.trim()).catch(() => {});
  });
  $("#plan-select").addEventListener("change", (e) => {
    if (e.target.value) openPlan(Number(e.target.value)).catch(() => {});
  });
  document.querySelectorAll("[data-tool]").forEach((b) => {
    b.addEventListener("click", () => setTool(b.dataset.tool));
  });
  $("#merge-btn").addEventListener("click", () => merge([...state.selected]).catch(() => {}));
  $("#lock-btn").addEventListener("click", () => toggleLock([...state.selected][0]).catch(() => {}));
  $("#snap-btn").addEventListener("click", () => snap([...state.selected][0]).catch(() => {}));
  $("#undo-btn").addEventListener("click", () => undoRedo("undo").catch(() => {}));
  $("#redo-btn").addEventListener("click", () => undoRedo("redo").catch(() => {}));
  $("#check-btn").addEventListener("click", () => run("Checking", () => check(), { retry: false })
    .catch(() => {}));
  $("#diff-btn").addEventListener("click", () => diff().catch(() => {}));
  $("#hint-apply").addEventListener("click", () => {
    if (state.tool === "edit") applyEdit();
    else finishDrawing();
  });
  $("#hint-cancel").addEventListener("click", cancelTool);
  $("#conflict-retry").addEventListener("click", () => retryPending().catch(() => {}));
  $("#conflict-drop").addEventListener("click", clearConflict);
  $("#export-btn").addEventListener("click", () => exportPlan($("#export-format").value)
    .catch(() => {}));
  $("#import-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const file = $("#import-file").files[0];
    if (!file) { setStatus("Choose a .gpkg, .geojson or zipped Shapefile first.", "error"); return; }
    importPlan(file).catch(() => {});
  });
  document.querySelectorAll("input[name='move-what']").forEach((r) => {
    r.addEventListener("change", () => {
      state.move.what = r.value;
      state.move.picked = new Set();
      state.move.pickedBlocks = new Map();
      $("#move-help").textContent = r.value === "buildings"
        ? "Click buildings (shift-click to add, shift-drag a box to add many), pick the grid to give them to, then Move."
        : "Click road blocks (click again to drop one), pick the grid to give them to, then Move.";
      showHint(r.value === "buildings" ? HINTS.move : HINTS.moveBlocks, { cancel: true });
      loadMoveData();
    });
  });
  $("#move-to").addEventListener("change", (e) => {
    state.move.to = e.target.value ? Number(e.target.value) : null;
    renderPicked();
  });
  $("#move-btn").addEventListener("click", () => moveSelected().catch(() => {}));
  $("#move-clear").addEventListener("click", () => {
    state.move.picked = new Set();
    state.move.pickedBlocks = new Map();
    renderPicked();
  });
  const pub = $("#publish-btn");
  pub.addEventListener("click", () => {
    if (pub.dataset.armed !== "true") {
      pub.dataset.armed = "true";
      pub.textContent = "Click again to publish a new boundary version";
      setTimeout(() => { pub.dataset.armed = "false"; pub.textContent = "Publish…"; }, 6000);
      return;
    }
    pub.dataset.armed = "false";
    pub.textContent = "Publish…";
    publish().catch(() => {});
  });
  $("#partition-form").addEventListener("submit", (e) => {
    e.preventDefault();
    partition({ target: Number($("#target-input").value) || undefined,
      tolerance: $("#tolerance-input").value === "" ? undefined : Number($("#tolerance-input").value),
      n: Number($("#n-input").value) || undefined, seed: Number($("#seed-input").value) || 0,
    }).catch(() => {});
  });
  map.on("click", onMapClick);
  map.on("dblclick", (e) => {
    if (!DRAW_TOOLS.has(state.tool)) return;
    e.preventDefault();
    finishDrawing();
  });
  map.on("mousedown", "edit-vertices", onEditDown);
  map.on("mousedown", "edit-mids", onEditDown);
  map.on("dblclick", "edit-vertices", onEditDblClick);
  map.on("mousedown", onMoveDown);
  map.on("mousemove", (e) => {
    if (DRAW_TOOLS.has(state.tool) && state.drawing.length) drawPreview([e.lngLat.lng, e.lngLat.lat]);
    onEditMove(e);
    onMoveDrag(e);
  });
  map.on("mouseup", () => { onEditUp(); onMoveUp(); });
  document.addEventListener("mouseup", () => { onEditUp(); onMoveUp(); });
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    if (DRAW_TOOLS.has(state.tool) && e.key === "Enter") finishDrawing();
    if (state.tool === "edit" && e.key === "Enter") applyEdit();
    if (DRAW_TOOLS.has(state.tool) && e.key === "Backspace" && state.drawing.length) {
      state.drawing.pop();
      drawPreview();
    }
    if (e.key === "Escape") cancelTool();
    if ((e.ctrlKey || e.metaKey) && e.key === "z") $("#undo-btn").click();
    if ((e.ctrlKey || e.metaKey) && e.key === "y") $("#redo-btn").click();
  });
}

const ready = new Promise((resolve) => {
  map.on("load", async () => {
    addLayers();
    wire();
    renderLegend();
    if (state.token) signIn(state.token);
    await loadRootOptions();
    resolve();
  });
});

window.planner = {
  ready, map, state, whenIdle, signIn, createPlan, openPlan, split, merge, partition, reshape,
  carve, moveBuildings, moveBlocks, exportPlan, importPlan, retryPending, check, diff, publish,
  setTool, select, startEdit, applyEdit, finishDrawing, loadMoveData,
  undo: () => undoRedo("undo"), redo: () => undoRedo("redo"),
  grids: () => state.grids.map((f) => ({ key: f.id, ...f.properties })),
};
