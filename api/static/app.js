// gridgov map viewer: areas of every level from /api/areas, point lookup from /api/locate.
//
// Plain ES module, no build step. MapLibre GL JS is the vendored UMD bundle loaded before this
// module (window.maplibregl). The style is built here with no external basemap, glyphs or
// sprites, so the page makes no request beyond this server. `window.gridgov` is a small hook
// for the browser tests: `ready` (a promise), `map`, and the actions the UI performs.

const maplibregl = window.maplibregl;

// ColorBrewer GnBu (5 classes): light for few households, dark for many.
const PALETTE = ["#e0f3db", "#a8ddb5", "#7bccc4", "#43a2ca", "#0868ac"];
const EMPTY_COLOUR = "#d5dbe1";
const HIGHLIGHT = "#f26b1d";
const MAX_CLASSES = PALETTE.length;
const FILL_OPACITY = 0.85;

const state = {
  levels: [],          // [{rank, name}], top first, discovered from the data
  level: null,         // the level name shown
  features: new Map(), // level name → GeoJSON features (cached)
  classes: [],         // [{min, max, colour, count}] of the shown level
  selected: null,      // code of the highlighted area
};

const $ = (sel) => document.querySelector(sel);
const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
const nf = new Intl.NumberFormat("en");
const nf1 = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

// ---------------------------------------------------------------------------------------------
// API
class ApiError extends Error {
  constructor(status, detail, field) {
    super(detail);
    this.status = status;
    this.field = field;
  }
}

async function getJSON(path, params = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
  }
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    const detail = typeof body.detail === "string" ? body.detail : resp.statusText;
    throw new ApiError(resp.status, detail, body.field);
  }
  return resp.json();
}

/** The levels present in the data, top first.
 *
 * Walks down one branch of the tree (first area of the top level, then its first child...), so
 * every request answers 200; asking for an unknown level would log a 422 in the console. */
async function discoverLevels() {
  const levels = [];
  let fc = await getJSON("/api/areas", { level: 0, limit: 1 });
  while (fc.features.length) {
    const p = fc.features[0].properties;
    levels.push({ rank: p.level, name: p.level_name });
    fc = await getJSON("/api/areas", { parent: p.code, limit: 1 });
  }
  return levels;
}

async function loadLevel(name) {
  if (!state.features.has(name)) {
    const fc = await getJSON("/api/areas", { level: name });
    state.features.set(name, fc.features.filter((f) => f.geometry));
  }
  return state.features.get(name);
}

// ---------------------------------------------------------------------------------------------
// Geometry helpers (lon/lat)
function bboxOf(features) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  const walk = (c) => {
    if (typeof c[0] === "number") {
      if (c[0] < x0) x0 = c[0];
      if (c[0] > x1) x1 = c[0];
      if (c[1] < y0) y0 = c[1];
      if (c[1] > y1) y1 = c[1];
    } else {
      for (const cc of c) walk(cc);
    }
  };
  for (const f of features) if (f.geometry) walk(f.geometry.coordinates);
  return Number.isFinite(x0) ? [[x0, y0], [x1, y1]] : null;
}

// ---------------------------------------------------------------------------------------------
// Classes: up to five quantile classes of households, rounded to readable numbers.
function niceRound(v) {
  if (v <= 10) return Math.round(v);
  const step = 10 ** (Math.floor(Math.log10(v)) - 1); // two significant digits
  return Math.round(v / step) * step;
}

export function householdClasses(values) {
  const positive = values.filter((v) => v > 0).sort((a, b) => a - b);
  const classes = [];
  const zeros = values.length - positive.length;
  if (zeros) classes.push({ min: 0, max: 0, colour: EMPTY_COLOUR, count: zeros, stepFrom: 0 });
  if (!positive.length) return classes;
  const lo = positive[0];
  const hi = positive[positive.length - 1];
  const breaks = [];
  for (let k = 1; k < MAX_CLASSES; k++) {
    const b = niceRound(positive[Math.floor((k * positive.length) / MAX_CLASSES)]);
    if (b > lo && b <= hi && b > (breaks[breaks.length - 1] ?? -Infinity)) breaks.push(b);
  }
  const edges = [lo, ...breaks];
  // Spread the palette over however many classes there are, keeping both ends.
  const n = edges.length;
  edges.forEach((min, i) => {
    const max = i + 1 < n ? edges[i + 1] - 1 : hi;
    const colour = PALETTE[n === 1 ? PALETTE.length - 1
      : Math.round((i * (PALETTE.length - 1)) / (n - 1))];
    const count = positive.filter((v) => v >= min && v <= max).length;
    // The first positive class starts at 1 on the map (anything above zero), at lo in the legend.
    classes.push({ min, max, colour, count, stepFrom: i === 0 ? 1 : min });
  });
  return classes;
}

function fillColourExpression(classes) {
  if (!classes.length) return EMPTY_COLOUR;
  // step: the first colour below the second class's minimum, and so on.
  const expr = ["step", ["coalesce", ["get", "households"], 0], classes[0].colour];
  for (const c of classes.slice(1)) expr.push(c.stepFrom, c.colour);
  return expr;
}

function classLabel(c) {
  if (c.max === 0) return "none";
  if (c.min === c.max) return nf.format(c.min);
  return `${nf.format(c.min)} – ${nf.format(c.max)}`;
}

// ---------------------------------------------------------------------------------------------
// Map
const BACKGROUND = "#e9edf1";
const EMPTY_FC = { type: "FeatureCollection", features: [] };

const map = new maplibregl.Map({
  container: "map",
  // A plain style: no basemap tiles, no glyphs, no sprite; nothing leaves this server.
  style: {
    version: 8,
    sources: {},
    layers: [{ id: "background", type: "background", paint: { "background-color": BACKGROUND } }],
  },
  center: [0, 20],
  zoom: 1,
  attributionControl: { compact: true, customAttribution: "gridgov" },
  dragRotate: false,
  pitchWithRotate: false,
});
map.touchZoomRotate.disableRotation();
map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");

class FitControl {
  onAdd() {
    this.el = document.createElement("div");
    this.el.className = "maplibregl-ctrl maplibregl-ctrl-group fit-ctrl";
    const b = document.createElement("button");
    b.type = "button";
    b.title = "Zoom to all areas";
    b.setAttribute("aria-label", "Zoom to all areas");
    b.innerHTML = '<svg viewBox="0 0 20 20" aria-hidden="true"><path d="M3 7V3h4M13 3h4v4' +
      'M17 13v4h-4M7 17H3v-4"/></svg>';
    b.addEventListener("click", () => fitToData());
    this.el.append(b);
    return this.el;
  }
  onRemove() { this.el.remove(); }
}
map.addControl(new FitControl(), "top-right");
map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");

function addLayers() {
  map.addSource("areas", { type: "geojson", data: EMPTY_FC, promoteId: "code" });
  map.addSource("context", { type: "geojson", data: EMPTY_FC });
  const width = (a, b) => ["interpolate", ["linear"], ["zoom"], 10, a, 16, b];
  map.addLayer({
    id: "areas-fill", type: "fill", source: "areas",
    paint: {
      "fill-color": EMPTY_COLOUR,
      "fill-opacity": ["case", ["boolean", ["feature-state", "hover"], false], 1, FILL_OPACITY],
    },
  });
  map.addLayer({
    id: "areas-outline", type: "line", source: "areas",
    paint: { "line-color": "#ffffff", "line-width": width(0.6, 1.6), "line-opacity": 0.9 },
  });
  // The level above, drawn over the fill so grids read as parts of their community.
  map.addLayer({
    id: "context-outline", type: "line", source: "context",
    paint: { "line-color": "#203040", "line-width": width(1.1, 2.6), "line-opacity": 0.7 },
  });
  // feature-state cannot be used in filters: the hover outline is always there, transparent.
  map.addLayer({
    id: "areas-hover", type: "line", source: "areas",
    paint: {
      "line-color": "#203040", "line-width": width(1.2, 2.5),
      "line-opacity": ["case", ["boolean", ["feature-state", "hover"], false], 1, 0],
    },
  });
  map.addLayer({
    id: "areas-highlight", type: "line", source: "areas",
    filter: ["==", ["get", "code"], ""],
    layout: { "line-join": "round" },
    paint: { "line-color": HIGHLIGHT, "line-width": width(2.5, 4.5) },
  });
}

function whenIdle() {
  return new Promise((resolve) => {
    if (map.loaded() && !map.isMoving()) {
      // Let pending setData/setPaint calls reach the renderer before resolving.
      map.once("idle", resolve);
      map.triggerRepaint();
    } else {
      map.once("idle", resolve);
    }
  });
}

function fitToData(options = {}) {
  const feats = state.features.get(state.level) ?? [];
  const bounds = bboxOf(feats);
  if (bounds) {
    map.fitBounds(bounds, { padding: 40, duration: reducedMotion ? 0 : 500, ...options });
  }
}

// ---------------------------------------------------------------------------------------------
// Level switcher
function renderLevelSwitcher() {
  const box = $("#levels");
  box.querySelectorAll("label").forEach((l) => l.remove());
  for (const lv of state.levels) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "level";
    input.value = lv.name;
    input.checked = lv.name === state.level;
    input.addEventListener("change", () => setLevel(lv.name));
    const text = document.createElement("span");
    text.textContent = lv.name;
    const count = document.createElement("span");
    count.className = "count";
    count.dataset.countFor = lv.name;
    count.setAttribute("aria-hidden", "true"); // the legend summary says it in words
    const loaded = state.features.get(lv.name);
    count.textContent = loaded ? nf.format(loaded.length) : "";
    count.hidden = !loaded;
    label.append(input, text, count);
    box.append(label);
  }
}

function updateCounts() {
  document.querySelectorAll("[data-count-for]").forEach((el) => {
    const loaded = state.features.get(el.dataset.countFor);
    el.textContent = loaded ? nf.format(loaded.length) : "";
    el.hidden = !loaded;
  });
}

async function setLevel(name, { fit = false } = {}) {
  const lv = state.levels.find((l) => l.name === name);
  if (!lv) throw new Error(`unknown level ${name}`);
  setStatus(`Loading ${name} areas…`);
  const feats = await loadLevel(name);
  const above = state.levels.find((l) => l.rank === lv.rank - 1);
  const context = above ? await loadLevel(above.name) : [];
  state.level = name;
  clearHover();
  map.getSource("areas").setData({ type: "FeatureCollection", features: feats });
  map.getSource("context").setData({ type: "FeatureCollection", features: context });
  state.classes = householdClasses(feats.map((f) => Number(f.properties.households) || 0));
  map.setPaintProperty("areas-fill", "fill-color", fillColourExpression(state.classes));
  if (!feats.some((f) => f.properties.code === state.selected)) highlight(null);
  for (const input of document.querySelectorAll('#levels input')) {
    input.checked = input.value === name;
  }
  updateCounts();
  renderLegend(feats);
  setStatus("");
  if (fit) fitToData({ duration: 0 });
  return feats;
}

function renderLegend(feats) {
  document.querySelectorAll("[data-level-name]").forEach((el) => {
    el.textContent = state.level;
  });
  const ul = $("#legend");
  ul.replaceChildren(...state.classes.map((c) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = c.colour;
    sw.style.opacity = String(FILL_OPACITY);
    const swBg = document.createElement("span"); // the map's background, so colours match
    swBg.className = "swatch-bg";
    swBg.setAttribute("aria-hidden", "true");
    swBg.append(sw);
    const label = document.createElement("span");
    label.textContent = classLabel(c);
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = `${nf.format(c.count)} ${c.count === 1 ? "area" : "areas"}`;
    li.append(swBg, label, n);
    return li;
  }));
  const hh = feats.reduce((s, f) => s + (Number(f.properties.households) || 0), 0);
  const pop = feats.reduce((s, f) => s + (Number(f.properties.population) || 0), 0);
  $("#summary").textContent = `${nf.format(feats.length)} ${state.level} areas · ` +
    `${nf.format(hh)} households · ${nf.format(pop)} residents`;
}

// ---------------------------------------------------------------------------------------------
// Details: popup, selected card, hover chip
function factsList(p) {
  const dl = document.createElement("dl");
  dl.className = "facts";
  const rows = [
    ["Code", p.code, "code"],
    ["Level", p.level_name ?? p.level],
    ["Households", p.households == null ? "–" : nf.format(p.households)],
    ["Population", p.population == null ? "–" : nf.format(p.population)],
    ["Area", p.area_m2 == null ? "–" : `${nf1.format(p.area_m2 / 10000)} ha`],
  ];
  if (p.grid_type) rows.splice(2, 0, ["Type", p.grid_type]);
  for (const [k, v, cls] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    if (cls) dd.className = cls;
    dl.append(dt, dd);
  }
  return dl;
}

function areaCard(p) {
  const box = document.createElement("div");
  const title = document.createElement("p");
  title.className = "area-title";
  title.textContent = p.name;
  const sub = document.createElement("p");
  sub.className = "area-sub";
  sub.textContent = cap(String(p.level_name ?? "")) + (p.parent_code ? ` in ${p.parent_code}` : "");
  box.append(title, sub, factsList(p));
  return box;
}

const popup = new maplibregl.Popup({ closeButton: true, maxWidth: "300px", focusAfterOpen: false });

function openPopup(lngLat, props) {
  const el = areaCard(props);
  el.classList.add("popup-area");
  el.dataset.code = props.code;
  popup.setLngLat(lngLat).setDOMContent(el).addTo(map);
}

function showSelected(props) {
  $("#selected-card").hidden = !props;
  $("#selected").replaceChildren(...(props ? [areaCard(props)] : []));
}

function highlight(code) {
  state.selected = code;
  map.setFilter("areas-highlight", ["==", ["get", "code"], code ?? ""]);
}

let hovered = null;
function clearHover() {
  if (hovered !== null) map.setFeatureState({ source: "areas", id: hovered }, { hover: false });
  hovered = null;
  $("#hover").hidden = true;
  map.getCanvas().style.cursor = "";
}

// ---------------------------------------------------------------------------------------------
// Locate: the chain of areas containing a point
let locateSeq = 0;
const pin = new maplibregl.Marker({ color: HIGHLIGHT, scale: 0.7 });

async function locate(lon, lat) {
  const seq = ++locateSeq;
  const box = $("#locate");
  pin.setLngLat([lon, lat]).addTo(map);
  box.replaceChildren(Object.assign(document.createElement("p"),
    { className: "muted", textContent: "Looking up…" }));
  let result;
  try {
    result = await getJSON("/api/locate", { lon: lon.toFixed(7), lat: lat.toFixed(7) });
  } catch (err) {
    if (seq !== locateSeq) return null;
    const msg = err.status === 404 ? "No area contains this point." : `Lookup failed: ${err.message}`;
    box.replaceChildren(Object.assign(document.createElement("p"),
      { className: "muted", textContent: msg }));
    return null;
  }
  if (seq !== locateSeq) return result; // a newer click won
  const coords = document.createElement("p");
  coords.className = "coords";
  coords.textContent = `${lat.toFixed(5)}° N, ${lon.toFixed(5)}° E`;
  const ol = document.createElement("ol");
  ol.className = "chain";
  ol.setAttribute("aria-label", "Areas containing the point, from the top level down");
  for (const a of result.areas) {
    const li = document.createElement("li");
    li.dataset.code = a.code;
    li.dataset.level = a.level;
    const lvl = Object.assign(document.createElement("span"), { className: "lvl" });
    lvl.append(a.level, Object.assign(document.createElement("span"), { className: "code",
      textContent: a.code }));
    const btn = Object.assign(document.createElement("button"), { type: "button",
      textContent: a.name });
    btn.setAttribute("aria-label", `Show ${a.level} ${a.name} (${a.code}) on the map`);
    btn.addEventListener("click", () => selectArea(a.code, a.level));
    const hh = Object.assign(document.createElement("span"), { className: "hh",
      textContent: `${nf.format(a.households)} households · ${nf.format(a.population)} residents`
        + ` · ${nf1.format(a.area_m2 / 10000)} ha` });
    li.append(lvl, btn, hh);
    ol.append(li);
  }
  const parts = [coords, ol];
  if (result.zones?.length) {
    const z = document.createElement("div");
    z.className = "zones";
    z.append(Object.assign(document.createElement("h3"),
      { textContent: "Responsibility zones" }));
    const ul = document.createElement("ul");
    for (const zone of result.zones) {
      const li = document.createElement("li");
      li.dataset.kind = zone.kind;
      const who = zone.department ?? zone.organisation;
      li.append(
        Object.assign(document.createElement("span"), { className: "lvl",
          textContent: String(zone.kind).replaceAll("_", " ") }),
        Object.assign(document.createElement("span"), { className: "zone-name",
          textContent: zone.name }),
      );
      if (who) li.append(Object.assign(document.createElement("span"), { className: "hh",
        textContent: who }));
      ul.append(li);
    }
    z.append(ul);
    parts.push(z);
  }
  box.replaceChildren(...parts);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Search: client-side over every loaded level (all levels are loaded on first use)
async function loadAllLevels() {
  await Promise.all(state.levels.map((l) => loadLevel(l.name)));
  updateCounts();
}

function findAreas(query, limit = 8) {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  const scored = [];
  const rankOf = new Map(state.levels.map((l) => [l.name, l.rank]));
  for (const [levelName, feats] of state.features) {
    for (const f of feats) {
      const code = String(f.properties.code).toLowerCase();
      const name = String(f.properties.name ?? "").toLowerCase();
      let score = null;
      if (code === q) score = 0;
      else if (name === q) score = 1;
      else if (code.startsWith(q)) score = 2;
      else if (name.startsWith(q)) score = 3;
      else if (name.includes(q)) score = 4;
      if (score !== null) scored.push({ f, score, rank: rankOf.get(levelName) ?? 0 });
    }
  }
  // Best match first; among equals, bottom levels (grids) first, then by code.
  scored.sort((a, b) => a.score - b.score || b.rank - a.rank
    || String(a.f.properties.code).localeCompare(String(b.f.properties.code)));
  return scored.slice(0, limit).map((s) => s.f);
}

async function selectArea(code, levelName) {
  await loadAllLevels();
  let feature = null;
  for (const [name, feats] of state.features) {
    if (levelName && name !== levelName) continue;
    feature = feats.find((f) => f.properties.code === code);
    if (feature) break;
  }
  if (!feature) {
    setStatus(`No area with code ${code}.`, true);
    return null;
  }
  const p = feature.properties;
  if (p.level_name !== state.level) await setLevel(p.level_name);
  highlight(p.code);
  showSelected(p);
  popup.remove();
  map.fitBounds(bboxOf([feature]), {
    padding: 80, maxZoom: 17, duration: reducedMotion ? 0 : 700,
  });
  setStatus(`Showing ${p.level_name} ${p.name} (${p.code}).`);
  return feature;
}

async function search(query) {
  await loadAllLevels();
  const [best] = findAreas(query, 1);
  if (!best) {
    setStatus(`No area matches “${query}”.`, true);
    return null;
  }
  return selectArea(best.properties.code, best.properties.level_name);
}

function setupSearch() {
  const input = $("#search-input");
  const list = $("#search-results");
  let results = [];
  let active = -1;

  const close = () => {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  };
  const render = () => {
    list.replaceChildren();
    if (!input.value.trim()) return close();
    if (!results.length) {
      const li = Object.assign(document.createElement("li"), { className: "empty",
        textContent: `No area matches “${input.value.trim()}”` });
      li.setAttribute("role", "option");
      li.setAttribute("aria-disabled", "true");
      list.append(li);
    }
    results.forEach((f, i) => {
      const p = f.properties;
      const li = document.createElement("li");
      li.id = `search-option-${i}`;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", String(i === active));
      li.dataset.code = p.code;
      li.append(
        Object.assign(document.createElement("span"), { className: "name", textContent: p.name }),
        meta(p),
      );
      // mousedown, not click: it fires before the input's blur closes the list.
      li.addEventListener("mousedown", (ev) => {
        ev.preventDefault();
        choose(i);
      });
      list.append(li);
    });
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    if (active >= 0) input.setAttribute("aria-activedescendant", `search-option-${active}`);
    else input.removeAttribute("aria-activedescendant");
  };
  const meta = (p) => {
    const el = Object.assign(document.createElement("span"), { className: "meta",
      textContent: cap(String(p.level_name)) });
    el.append(Object.assign(document.createElement("span"), { className: "code",
      textContent: p.code }));
    return el;
  };
  const choose = (i) => {
    const f = results[i];
    close();
    if (f) {
      input.value = f.properties.code;
      selectArea(f.properties.code, f.properties.level_name);
    }
  };

  input.addEventListener("focus", () => { loadAllLevels().catch(reportError); });
  input.addEventListener("input", async () => {
    await loadAllLevels();
    results = findAreas(input.value);
    active = results.length ? 0 : -1;
    render();
  });
  input.addEventListener("keydown", async (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (!results.length) return;
      ev.preventDefault();
      const d = ev.key === "ArrowDown" ? 1 : -1;
      active = (active + d + results.length) % results.length;
      render();
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      if (list.hidden || active < 0) {
        close();
        await search(input.value);
      } else {
        choose(active);
      }
    } else if (ev.key === "Escape") {
      close();
    }
  });
  input.addEventListener("blur", close);
}

// ---------------------------------------------------------------------------------------------
// Status line
function setStatus(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function reportError(err) {
  setStatus(err instanceof ApiError ? err.message : `Something went wrong: ${err.message}`, true);
}

// ---------------------------------------------------------------------------------------------
// Interaction
function setupInteraction() {
  map.on("mousemove", "areas-fill", (e) => {
    const f = e.features?.[0];
    if (!f) return;
    if (hovered !== f.id) {
      clearHover();
      hovered = f.id;
      map.setFeatureState({ source: "areas", id: hovered }, { hover: true });
    }
    map.getCanvas().style.cursor = "pointer";
    const chip = $("#hover");
    chip.replaceChildren(document.createTextNode(f.properties.name),
      Object.assign(document.createElement("span"), { className: "code",
        textContent: f.properties.code }));
    chip.hidden = false;
  });
  map.on("mouseleave", "areas-fill", clearHover);

  map.on("click", (e) => {
    const [f] = map.queryRenderedFeatures(e.point, { layers: ["areas-fill"] });
    if (f) {
      // The popup shows the details; the side panel keeps room for the chain.
      openPopup(e.lngLat, f.properties);
      highlight(f.properties.code);
      showSelected(null);
    } else {
      popup.remove();
    }
    locate(e.lngLat.lng, e.lngLat.lat).catch(reportError);
  });
}

// ---------------------------------------------------------------------------------------------
// Start
async function start() {
  // Ask for the data while MapLibre starts up.
  const levels = discoverLevels().catch((err) => {
    if (err instanceof ApiError && err.status === 404) return []; // no jurisdiction loaded yet
    throw err;
  });
  await new Promise((resolve) => map.once("load", resolve));
  addLayers();
  setupInteraction();
  setupSearch();
  state.levels = await levels;
  $("#loading").hidden = true;
  if (!state.levels.length) {
    setStatus("No areas are loaded yet. Run `gridgov demo` to load the demo city.", true);
    return;
  }
  // Start on the bottom level: the management grids.
  state.level = state.levels[state.levels.length - 1].name;
  renderLevelSwitcher();
  await setLevel(state.level, { fit: true });
  await whenIdle();
  // The other levels in the background: counts on the switcher, instant search and switching.
  loadAllLevels().catch(reportError);
}

const ready = start().catch((err) => {
  $("#loading").hidden = true;
  reportError(err);
  throw err;
});

window.gridgov = {
  ready,
  map,
  state,
  setLevel: (name) => setLevel(name).then(() => whenIdle()),
  search,
  selectArea,
  findAreas,
  locate,
  fitToData,
  whenIdle,
};
