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

function addLayers() {
  for (const id of ["grids", "parents", "problems", "diff", "draw"]) {
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
  map.addLayer({ id: "diff-old", type: "line", source: "diff",
    filter: ["==", ["get", "role"], "old"],
    paint: { "line-color": "#6b2fa3", "line-width": w(1.5, 3), "line-dasharray": [2, 1.5] } });
  map.addLayer({ id: "problems-fill", type: "fill", source: "problems",
    filter: ["==", ["geometry-type"], "Polygon"],
    paint: { "fill-color": "#b42318", "fill-opacity": 0.45 } });
  map.addLayer({ id: "problems-line", type: "line", source: "problems",
    paint: { "line-color": "#b42318", "line-width": w(2, 4) } });
  map.addLayer({ id: "problems-point", type: "circle", source: "problems",
    filter: ["==", ["geometry-type"], "Point"],
    paint: { "circle-color": "#b42318", "circle-radius": 6, "circle-stroke-color": "#fff",
      "circle-stroke-width": 2 } });
  map.addLayer({ id: "grids-selected", type: "line", source: "grids",
    filter: ["in", ["id"], ["literal", []]],
    paint: { "line-color": "#f26b1d", "line-width": w(3, 5) } });
  map.addLayer({ id: "draw-line", type: "line", source: "draw",
    paint: { "line-color": "#f26b1d", "line-width": 3, "line-dasharray": [2, 1] } });
  map.addLayer({ id: "draw-points", type: "circle", source: "draw",
    filter: ["==", ["geometry-type"], "Point"],
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
  features.forEach((f) => f.geometry && walk(f.geometry.coordinates));
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
  const keys = new Set(state.grids.map((f) => f.id));
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
  for (const id of ["#partition-btn", "#check-btn", "#diff-btn", "#publish-btn"]) {
    $(id).disabled = !draft;
  }
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
// versions each one sends are those the previous one left.
let queue = Promise.resolve();

function run(label, fn) {
  const next = queue.then(() => runNow(label, fn));
  queue = next.catch(() => {});
  return next;
}

async function runNow(label, fn) {
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
    } else if (err instanceof ApiError && err.status === 401) {
      setStatus("Sign in with a planner token first.", "error");
    } else {
      setStatus(err.message, "error");
      if (err instanceof ApiError && err.body.geometry) showProblems([err.body.geometry]);
    }
    throw err;
  } finally {
    state.busy = false;
  }
}

async function afterEdit() {
  showProblems([]);
  await loadPlan(state.plan.id);
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
    await loadPlan(plan.id, { fit: true });
    await refreshPlanList();
    $("#plan-select").value = String(plan.id);
    await check({ quiet: true });
    return plan;
  });
}

async function openPlan(id) {
  return run("Opening the plan", async () => {
    state.selected = new Set();
    const plan = await loadPlan(id, { fit: true });
    await check({ quiet: true });
    return plan;
  });
}

async function split(key, coordinates) {
  return run("Splitting", async () => {
    const out = await api(`/api/plans/${state.plan.id}/areas/${key}/split`, {
      method: "POST", body: { line: { type: "LineString", coordinates }, version: versionOf(key) } });
    await afterEdit();
    return out;
  });
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

async function undoRedo(which) {
  return run(which === "undo" ? "Undoing" : "Redoing", async () => {
    const out = await api(`/api/plans/${state.plan.id}/${which}`, { method: "POST" });
    await afterEdit();
    return out;
  });
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
      $("#partition-result").innerHTML = "";
      $("#partition-result").append(
        `${m.count} grids in ${out.seconds.toFixed(2)} s · worst deviation ${pct(m.max_abs_deviation)}`
        + ` · mean Polsby-Popper ${m.mean_polsby_popper.toFixed(2)}`
        + ` · along roads ${Math.round((m.road_share || 0) * 100)}%`);
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

function showProblems(geoms) {
  state.problems = geoms.filter(Boolean).map((g, i) => ({ type: "Feature", id: i, geometry: g,
    properties: {} }));
  map.getSource("problems").setData({ type: "FeatureCollection", features: state.problems });
}

async function check({ quiet = false } = {}) {
  const result = await api(`/api/plans/${state.plan.id}/check`);
  state.check = result;
  const box = $("#check-result");
  const s = result.summary;
  const head = document.createElement("p");
  head.innerHTML = "";
  const verdict = document.createElement("span");
  verdict.className = result.ok ? "ok" : "bad";
  verdict.textContent = result.ok ? "No errors" : `${s.errors} error(s)`;
  head.append(verdict, ` · ${s.warnings} warning(s) · mean Polsby-Popper `
    + `${(s.mean_polsby_popper ?? 0).toFixed(2)} · Reock ${(s.mean_reock ?? 0).toFixed(2)}`
    + ` · along roads ${Math.round((s.road_share ?? 0) * 100)}%`);
  const list = document.createElement("ul");
  list.className = "problems";
  for (const p of result.problems.slice(0, 200)) {
    const li = document.createElement("li");
    li.className = p.severity;
    li.dataset.kind = p.kind;
    li.textContent = p.message;
    li.addEventListener("click", () => {
      showProblems([p.geometry]);
      const b = p.geometry && bboxOf([{ geometry: p.geometry }]);
      if (b) map.fitBounds(b, { padding: 80, maxZoom: 18, duration: 0 });
    });
    list.append(li);
  }
  box.replaceChildren(head, list);
  showProblems(result.problems.filter((p) => p.severity === "error").map((p) => p.geometry));
  renderTable();
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
  });
}

async function publish() {
  return run("Publishing", async () => {
    const out = await api(`/api/plans/${state.plan.id}/publish`, { method: "POST" });
    await loadPlan(state.plan.id);
    setStatus(`Published at ${out.published_at}: ${out.inserted} areas versioned,`
      + ` new codes ${out.new_codes.join(", ") || "none"}, ${out.cases_moved} cases moved`);
    await refreshPlanList();
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// Drawing a split line
function setTool(tool) {
  state.tool = tool;
  state.drawing = [];
  drawPreview();
  document.querySelectorAll("[data-tool]").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  });
  $(".map-wrap").classList.toggle("drawing", tool === "split");
  if (tool === "split") map.doubleClickZoom.disable();
  else map.doubleClickZoom.enable();
  const hint = $("#hint");
  hint.hidden = tool !== "split";
  hint.textContent = "Click to draw a line across a grid · double-click or Enter to cut · Esc to stop";
}

function drawPreview(cursor) {
  const pts = cursor ? [...state.drawing, cursor] : state.drawing;
  const features = pts.map((c) => ({ type: "Feature", geometry: { type: "Point", coordinates: c },
    properties: {} }));
  if (pts.length > 1) {
    features.push({ type: "Feature", geometry: { type: "LineString", coordinates: pts },
      properties: {} });
  }
  map.getSource("draw")?.setData({ type: "FeatureCollection", features });
}

async function finishLine() {
  const coords = state.drawing.slice();
  state.drawing = [];
  drawPreview();
  if (coords.length < 2) return;
  let key = state.selected.size === 1 ? [...state.selected][0] : null;
  if (key === null) {
    const mid = coords[Math.floor((coords.length - 1) / 2)];
    const next = coords[Math.floor((coords.length - 1) / 2) + 1];
    const p = map.project([(mid[0] + next[0]) / 2, (mid[1] + next[1]) / 2]);
    const hit = map.queryRenderedFeatures(p, { layers: ["grids-fill"] })[0];
    key = hit ? hit.id : null;
  }
  if (key === null) {
    setStatus("Draw the line across a grid (or select the grid first).", "error");
    return;
  }
  await split(key, coords).catch(() => {});
  setTool("select");
}

function onMapClick(e) {
  if (!state.plan) return;
  if (state.tool === "split") {
    const c = [e.lngLat.lng, e.lngLat.lat];
    const last = state.drawing[state.drawing.length - 1];
    if (!last || last[0] !== c[0] || last[1] !== c[1]) state.drawing.push(c);
    drawPreview();
    return;
  }
  const hit = map.queryRenderedFeatures(e.point, { layers: ["grids-fill"] })[0];
  select(hit ? hit.id : null, e.originalEvent.shiftKey);
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
  $("#check-btn").addEventListener("click", () => run("Checking", () => check()).catch(() => {}));
  $("#diff-btn").addEventListener("click", () => diff().catch(() => {}));
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
    if (state.tool !== "split") return;
    e.preventDefault();
    finishLine();
  });
  map.on("mousemove", (e) => {
    if (state.tool === "split" && state.drawing.length) drawPreview([e.lngLat.lng, e.lngLat.lat]);
  });
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement) return;
    if (state.tool === "split" && e.key === "Enter") finishLine();
    if (e.key === "Escape") setTool("select");
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
  ready, map, state, whenIdle, signIn, createPlan, openPlan, split, merge, partition,
  check, diff, publish, setTool, select, undo: () => undoRedo("undo"), redo: () => undoRedo("redo"),
  grids: () => state.grids.map((f) => ({ key: f.id, ...f.properties })),
};
