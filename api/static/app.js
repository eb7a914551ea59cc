// gridgov map viewer: every layer of the registry as vector tiles from this server, drawn with
// the server's MapLibre style (/styles/default.json), plus a households choropleth of the level
// chosen in the top bar, a layer switcher, a legend read from the style, popups, a time filter
// for cases, search (/api/search) and the point lookup (/api/locate).
//
// Plain ES module, no build step. MapLibre GL JS is the vendored UMD bundle loaded before this
// module (window.maplibregl). The style has no basemap, glyphs or sprites: the page asks
// nothing of anyone but this server. `window.gridgov` is a small hook for the browser tests:
// `ready` (a promise), `map`, `state` and the actions the UI performs.

import {
  ApiError, LEVEL_SOURCES, byColour, cap, el, factsList, formatTime, getJSON, humanize,
  loadStyle, matchEntries, withToken, maySeeRestricted, nf, nf1, renderedDistinct, whenIdle, whoAmI,
} from "./gridmap.js";

const maplibregl = window.maplibregl;

// ColorBrewer GnBu (5 classes): light for few households, dark for many.
const CHORO = ["#e0f3db", "#a8ddb5", "#7bccc4", "#43a2ca", "#0868ac"];
const EMPTY_COLOUR = "#d5dbe1";
const HIGHLIGHT = "#f26b1d";
const FILL_OPACITY = 0.62;
const BACKGROUND = "#f4f1ea"; // the default style's background, for legend swatches
const CLICK_TOLERANCE = 4; // px around a click that still hits a point or a line

// Layers answering clicks, most specific first; area fills come last.
const POINT_LAYERS = ["responders", "cases-point", "cases-agg", "facilities", "components"];
const LINE_LAYERS = ["zones-line", "roads"];

const state = {
  me: null,
  layerInfo: new Map(), // registry layer name → {title, minzoom, maxzoom}
  levels: [],           // [{rank, name, source, count, households, population, classes}]
  level: null,          // the level shown (its name)
  // source → bool (the layer switcher). Facilities (mostly cameras) and components (dense, from
  // zoom 15) start hidden so cases and grids read first.
  visible: { facilities: false, components: false },
  // Cases of the last 30 days to start with: a year of closed cases would bury the open ones.
  time: { preset: "30d", since: null, until: null, status: "" },
  selected: null,       // {code, source} of the highlighted area
  selectedCase: null,
  bbox: null,           // extent of all areas
};

const $ = (sel) => document.querySelector(sel);
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
const levelOf = (name) => state.levels.find((l) => l.name === name);
const sourceOfLevel = (name) => levelOf(name)?.source;

// ---------------------------------------------------------------------------------------------
// Style: the server's default style, plus what this page adds (choropleth fills, hover and
// highlight outlines, the selected case).

function classColours(classes) {
  const positive = classes.filter((c) => c.max > 0).length;
  let i = 0;
  return classes.map((c) => {
    if (c.max === 0) return EMPTY_COLOUR;
    const colour = CHORO[positive === 1 ? CHORO.length - 1
      : Math.round((i * (CHORO.length - 1)) / (positive - 1))];
    i += 1;
    return colour;
  });
}

function fillColour(classes) {
  if (!classes?.length) return EMPTY_COLOUR;
  const colours = classColours(classes);
  const expr = ["step", ["coalesce", ["get", "households"], 0], colours[0]];
  classes.slice(1).forEach((c, i) => expr.push(c.step_from, colours[i + 1]));
  return expr;
}

function augmentStyle(style) {
  const layers = style.layers;
  const at = (id) => layers.findIndex((l) => l.id === id);
  const width = (a, b) => ["interpolate", ["linear"], ["zoom"], 10, a, 16, b];
  const present = LEVEL_SOURCES.filter((s) => style.sources[s]);
  // One choropleth fill per level, under every outline; only the chosen level's is shown.
  const fills = present.map((src) => ({
    id: `${src}-fill`, type: "fill", source: src, "source-layer": src,
    layout: { visibility: "none" },
    paint: {
      "fill-color": EMPTY_COLOUR,
      "fill-opacity": ["case", ["boolean", ["feature-state", "hover"], false],
        Math.min(1, FILL_OPACITY + 0.25), FILL_OPACITY],
    },
  }));
  const firstFill = at("grids-fill") >= 0 ? at("grids-fill") : at("grids-line");
  const kept = layers.filter((l) => l.id !== "grids-fill");
  kept.splice(firstFill >= 0 ? firstFill : 1, 0, ...fills);
  // Hover and highlight outlines above every boundary line.
  const lastLine = Math.max(...present.map((s) => kept.findIndex((l) => l.id === `${s}-line`)));
  const outlines = present.flatMap((src) => [
    { id: `${src}-hover`, type: "line", source: src, "source-layer": src,
      layout: { visibility: "none" },
      paint: { "line-color": "#203040", "line-width": width(1.2, 2.5),
        "line-opacity": ["case", ["boolean", ["feature-state", "hover"], false], 1, 0] } },
    { id: `${src}-highlight`, type: "line", source: src, "source-layer": src,
      filter: ["==", ["get", "code"], ""], layout: { "line-join": "round" },
      paint: { "line-color": HIGHLIGHT, "line-width": width(2.5, 4.5) } },
  ]);
  kept.splice(lastLine + 1, 0, ...outlines);
  // Closed cases recede (same colours as the style, so the legend still holds).
  const points = kept.find((l) => l.id === "cases-point");
  if (points) {
    points.paint["circle-opacity"] = ["case", ["get", "open"], 1, 0.55];
    points.paint["circle-stroke-opacity"] = ["case", ["get", "open"], 1, 0.35];
  }
  if (style.sources.cases) {
    kept.push({ id: "cases-selected", type: "circle", source: "cases", "source-layer": "cases",
      minzoom: 13, filter: ["==", ["id"], -1],
      paint: { "circle-radius": 11, "circle-color": "rgba(0,0,0,0)",
        "circle-stroke-color": HIGHLIGHT, "circle-stroke-width": 3 } });
  }
  style.layers = kept;
  return style;
}

// ---------------------------------------------------------------------------------------------
// Map

let map;

class FitControl {
  onAdd() {
    this.el = el("div.maplibregl-ctrl.maplibregl-ctrl-group.fit-ctrl");
    const b = el("button", { type: "button", title: "Zoom to all areas",
      "aria-label": "Zoom to all areas" });
    b.innerHTML = '<svg viewBox="0 0 20 20" aria-hidden="true"><path d="M3 7V3h4M13 3h4v4' +
      'M17 13v4h-4M7 17H3v-4"/></svg>';
    b.addEventListener("click", () => fitToData());
    this.el.append(b);
    return this.el;
  }
  onRemove() { this.el.remove(); }
}

function fitToData(options = {}) {
  if (!state.bbox) return;
  const [x0, y0, x1, y1] = state.bbox;
  map.fitBounds([[x0, y0], [x1, y1]], { padding: 40, duration: reducedMotion ? 0 : 500,
    ...options });
}

// The view is kept in the URL (#map=zoom/lat/lon): a reload or a shared link shows the same place.
const hasViewInUrl = () => /(^#|&)map=/.test(window.location.hash);

function createMap(style) {
  const [x0, y0, x1, y1] = state.bbox ?? [-180, -80, 180, 80];
  map = new maplibregl.Map({
    container: "map",
    transformRequest: withToken,
    style,
    hash: "map",
    // Start on the data (not on the style's centre), so the first tiles asked for are the ones
    // shown; a view in the URL wins.
    bounds: hasViewInUrl() ? undefined : [[x0, y0], [x1, y1]],
    fitBoundsOptions: { padding: 40 },
    attributionControl: { compact: true, customAttribution: "gridgov" },
    dragRotate: false,
    pitchWithRotate: false,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new FitControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  window.gridgov.map = map;
  return new Promise((resolve) => map.once("load", resolve));
}

function styleSources() {
  return Object.keys(map.getStyle().sources);
}

function applyVisibility() {
  for (const layer of map.getStyle().layers) {
    if (!layer.source) continue;
    let visible = state.visible[layer.source] !== false;
    const isLevelLayer = LEVEL_SOURCES.includes(layer.source)
      && (layer.id.endsWith("-fill") || layer.id.endsWith("-hover"));
    if (isLevelLayer) visible = visible && layer.source === sourceOfLevel(state.level);
    map.setLayoutProperty(layer.id, "visibility", visible ? "visible" : "none");
  }
}

// ---------------------------------------------------------------------------------------------
// Levels (the top bar): which level is coloured by households and answers clicks

function renderLevelSwitcher() {
  const box = $("#levels");
  box.querySelectorAll("label").forEach((l) => l.remove());
  for (const lv of state.levels) {
    const input = el("input", { type: "radio", name: "level", value: lv.name,
      checked: lv.name === state.level });
    input.addEventListener("change", () => setLevel(lv.name).catch(reportError));
    const count = el("span.count", { textContent: nf.format(lv.count), "aria-hidden": "true" });
    box.append(el("label", {}, input, el("span", { textContent: lv.name }), count));
  }
}

async function setLevel(name, { zoomIn = true } = {}) {
  const lv = levelOf(name);
  if (!lv) throw new Error(`unknown level ${name}`);
  state.level = name;
  clearHover();
  state.visible[lv.source] = true;
  map.setPaintProperty(`${lv.source}-fill`, "fill-color", fillColour(lv.classes));
  for (const input of document.querySelectorAll("#levels input")) {
    input.checked = input.value === name;
  }
  applyVisibility();
  renderLayerSwitcher();
  renderLegend();
  const minzoom = state.layerInfo.get(lv.source)?.minzoom ?? 0;
  if (zoomIn && map.getZoom() < minzoom) {
    map.easeTo({ zoom: minzoom + 0.3, duration: reducedMotion ? 0 : 400 });
  }
  return lv;
}

// ---------------------------------------------------------------------------------------------
// Layer switcher

function mainColour(source) {
  const layer = map.getStyle().layers.find((l) => l.source === source
    && !l.id.endsWith("-hover") && !l.id.endsWith("-highlight") && l.id !== "cases-agg"
    && l.id !== "cases-selected" && !(LEVEL_SOURCES.includes(source) && l.type === "fill"));
  if (!layer) return "#999";
  const paint = layer.paint ?? {};
  const value = paint["line-color"] ?? paint["circle-color"] ?? paint["fill-color"];
  const entries = matchEntries(value);
  return entries.length ? entries[0].colour : "#999";
}

let switcherKey = null;
function renderLayerSwitcher() {
  const ul = $("#layers");
  const zoom = map.getZoom();
  // Rebuilt only when something it shows changed (not on every zoom), so focus stays put.
  const key = JSON.stringify([...state.layerInfo].map(([name, info]) => [name,
    state.visible[name] !== false, zoom < info.minzoom, mainColour(name)]));
  if (key === switcherKey) return;
  switcherKey = key;
  const items = [];
  for (const [name, info] of state.layerInfo) {
    if (!styleSources().includes(name)) continue;
    const id = `layer-${name}`;
    const input = el("input", { type: "checkbox", id, checked: state.visible[name] !== false });
    input.addEventListener("change", () => setLayerVisible(name, input.checked));
    const hidden = zoom < info.minzoom;
    const hint = hidden ? el("span.zoom-hint", { textContent: `zoom ${info.minzoom}+`,
      title: `Drawn from zoom ${info.minzoom}; the map is at ${nf1.format(zoom)}` }) : null;
    const sw = el("span.swatch-dot", { "aria-hidden": "true",
      style: { background: mainColour(name) } });
    items.push(el("li", { dataset: { layer: name }, className: hidden ? "out-of-zoom" : "" },
      input, el("label", { for: id }, sw, info.title), hint));
  }
  ul.replaceChildren(...items);
}

function setLayerVisible(name, visible) {
  state.visible[name] = visible;
  applyVisibility();
  const box = document.getElementById(`layer-${name}`);
  if (box) box.checked = visible;
  renderLegend();
  if (!visible && name === state.selected?.source) highlight(null);
  return whenIdle(map);
}

// ---------------------------------------------------------------------------------------------
// Legend: read from the style's paint properties, for the layers that are shown

const CASE_LABELS = { overdue: "Overdue (open, past its deadline)", open: "Open",
  null: "Closed" };

function swatch(colour, kind = "fill", extra = {}) {
  const sw = el(`span.swatch.swatch-${kind}`, { "aria-hidden": "true" });
  if (kind === "line") sw.style.borderTopColor = colour;
  else sw.style.background = colour;
  if (kind === "dash") sw.style.borderTopColor = colour;
  Object.assign(sw.style, extra);
  sw.dataset.colour = colour;
  return kind === "fill" ? el("span.swatch-bg", { "aria-hidden": "true",
    style: { background: BACKGROUND } }, sw) : sw;
}

function legendSection(source, title, rows) {
  return el("section.legend-section", { dataset: { layer: source } },
    el("h3", { textContent: title }),
    el("ul.legend", {}, rows.map(([sw, label, n]) => el("li", {}, sw, el("span", {
      textContent: label }), n !== undefined ? el("span.n", { textContent: n }) : null))));
}

function paintOf(id, prop) {
  return map.getLayer(id) ? map.getPaintProperty(id, prop) : undefined;
}

function renderLegend() {
  const parts = [];
  const lv = levelOf(state.level);
  if (lv && state.visible[lv.source] !== false) {
    const colours = classColours(lv.classes);
    parts.push(legendSection(`${lv.source}-fill`, `Households per ${lv.name}`,
      lv.classes.map((c, i) => [
        swatch(colours[i], "fill", { opacity: String(FILL_OPACITY) }),
        c.max === 0 ? "none" : c.min === c.max ? nf.format(c.min)
          : `${nf.format(c.min)} – ${nf.format(c.max)}`,
        `${nf.format(c.count)} ${c.count === 1 ? "area" : "areas"}`,
      ])));
  }
  const bounds = state.levels.filter((l) => state.visible[l.source] !== false
    && map.getLayer(`${l.source}-line`));
  if (bounds.length) {
    parts.push(legendSection("boundaries", "Boundaries", bounds.map((l) => [
      swatch(paintOf(`${l.source}-line`, "line-color"), "line"), cap(l.name)])));
  }
  const on = (s) => state.visible[s] !== false && styleSources().includes(s);
  if (on("cases")) {
    const rows = matchEntries(paintOf("cases-point", "circle-color")).map((e) => [
      swatch(e.colour, "dot"), CASE_LABELS[e.value] ?? humanize(e.value)]);
    rows.push([swatch(paintOf("cases-agg", "circle-color"), "dot", { width: "14px",
      height: "14px" }), "Cases per cell, zoomed out (size: count)"]);
    parts.push(legendSection("cases", "Cases", rows));
  }
  if (on("facilities")) {
    parts.push(legendSection("facilities", "Facilities", byColour(
      matchEntries(paintOf("facilities", "circle-color"))).map((g) => [
      swatch(g.colour, "dot"),
      g.values.includes(null) ? "Other types" : g.values.map(humanize).join(", ")])));
  }
  if (on("components")) {
    parts.push(legendSection("components", "Components", matchEntries(
      paintOf("components", "circle-color")).map((e) => [
      swatch(e.colour, "dot"), e.value === null ? "Other state" : humanize(e.value)])));
  }
  if (on("responsibility_zones")) {
    parts.push(legendSection("responsibility_zones", "Responsibility zones", [[
      swatch(paintOf("zones-line", "line-color"), "dash"), "Zone boundary (duty area, reach…)"]]));
  }
  if (on("road_edges")) {
    parts.push(legendSection("road_edges", "Roads", [[
      swatch(paintOf("roads", "line-color"), "line"), "Road network"]]));
  }
  if (on("responders")) {
    parts.push(legendSection("responders", "Responders on duty", matchEntries(
      paintOf("responders", "circle-color")).filter((e) => e.value !== null).map((e) => [
      swatch(e.colour, "dot"), humanize(e.value)])));
  }
  $("#legend").replaceChildren(...parts);
  if (lv) {
    $("#summary").textContent = `${nf.format(lv.count)} ${lv.name} areas · `
      + `${nf.format(lv.households)} households · ${nf.format(lv.population)} residents`;
  }
}

// ---------------------------------------------------------------------------------------------
// Time filter for cases: since/until/status go into the TileJSON (and so the tile) URLs

function localMidnight(daysAgo = 0) {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  d.setDate(d.getDate() - daysAgo);
  return d;
}

function timeParams() {
  const t = state.time;
  const params = {};
  if (t.preset === "today") params.since = localMidnight(0).toISOString();
  else if (t.preset === "7d") params.since = localMidnight(6).toISOString();
  else if (t.preset === "30d") params.since = localMidnight(29).toISOString();
  else if (t.preset === "custom") {
    if (t.since) params.since = new Date(`${t.since}T00:00:00`).toISOString();
    if (t.until) {
      const end = new Date(`${t.until}T00:00:00`);
      end.setDate(end.getDate() + 1); // "until" is inclusive in the form, exclusive in the API
      params.until = end.toISOString();
    }
  }
  if (t.status) params.status = t.status;
  return params;
}

function casesTileJSON() {
  const url = new URL("/tiles/cases.json", window.location.origin);
  for (const [k, v] of Object.entries(timeParams())) url.searchParams.set(k, v);
  return url.toString();
}

async function setTimeFilter(change) {
  Object.assign(state.time, change);
  const t = state.time;
  for (const input of document.querySelectorAll("#time-presets input")) {
    input.checked = input.value === t.preset;
  }
  $("#custom-range").hidden = t.preset !== "custom";
  $("#time-since").value = t.since ?? "";
  $("#time-until").value = t.until ?? "";
  $("#case-status").value = t.status ?? "";
  if (t.since && t.until && t.since > t.until) {
    setStatus("The range ends before it starts.", true);
    return;
  }
  const source = map.getSource("cases");
  if (!source) return;
  source.setUrl(casesTileJSON());
  await whenIdle(map);
  updateCaseSummary();
}

function setupTimeFilter() {
  for (const input of document.querySelectorAll("#time-presets input")) {
    input.addEventListener("change", () => {
      const change = { preset: input.value };
      if (input.value === "custom" && !state.time.since) {
        change.since = isoDate(localMidnight(6));
        change.until = isoDate(localMidnight(0));
      }
      setTimeFilter(change).catch(reportError);
    });
  }
  $("#time-since").addEventListener("change", (e) => {
    setTimeFilter({ preset: "custom", since: e.target.value || null }).catch(reportError);
  });
  $("#time-until").addEventListener("change", (e) => {
    setTimeFilter({ preset: "custom", until: e.target.value || null }).catch(reportError);
  });
  $("#case-status").addEventListener("change", (e) => {
    setTimeFilter({ status: e.target.value }).catch(reportError);
  });
}

function isoDate(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Cases drawn in the view: single points (z ≥ 13) or the sum of the counted cells. */
function casesInView() {
  if (!map.getLayer("cases-point") || state.visible.cases === false) return null;
  const points = renderedDistinct(map, ["cases-point"]);
  if (points.length) {
    return { total: points.length, open: points.filter((f) => f.properties.open).length,
      ids: points.map((f) => f.id) };
  }
  // Count cells are drawn with a ring of neighbours: the same cell can come from two tiles.
  const cells = new Map();
  for (const f of map.queryRenderedFeatures({ layers: ["cases-agg"] })) {
    const [x, y] = f.geometry.coordinates;
    cells.set(`${x.toFixed(6)},${y.toFixed(6)}`, f.properties);
  }
  let total = 0, open = 0;
  for (const p of cells.values()) { total += p.count; open += p.open; }
  return { total, open, ids: [] };
}

function updateCaseSummary() {
  const seen = casesInView();
  const box = $("#case-summary");
  if (!seen) {
    box.textContent = "Cases are hidden.";
    return;
  }
  box.textContent = seen.total
    ? `${nf.format(seen.total)} ${seen.total === 1 ? "case" : "cases"} in view`
      + ` · ${nf.format(seen.open)} open`
    : "No cases in view for this filter.";
}

// ---------------------------------------------------------------------------------------------
// Popups

const popup = new maplibregl.Popup({ closeButton: true, maxWidth: "320px",
  focusAfterOpen: false });

function card(title, sub, facts, extra = []) {
  return el("div", {}, el("p.area-title", { textContent: title }),
    sub ? el("p.area-sub", { textContent: sub }) : null, factsList(facts), ...extra);
}

function areaCard(p) {
  const levelName = p.level_name ?? state.levels.find((l) => l.rank === p.level)?.name;
  return card(p.name, cap(levelName ?? "") + (p.parent_code ? ` in ${p.parent_code}` : ""), [
    ["Code", p.code, "code"],
    ["Type", p.grid_type],
    ["Households", p.households == null ? "–" : nf.format(p.households)],
    ["Population", p.population == null ? "–" : nf.format(p.population)],
    ["Area", p.area_m2 == null ? "–" : `${nf1.format(p.area_m2 / 10000)} ha`],
  ]);
}

function statusChip(p) {
  const kind = p.overdue ? "overdue" : p.open === false
    || ["closed", "rejected"].includes(p.status) ? "closed" : "open";
  return el(`span.chip.chip-${kind}`, { textContent: kind === "overdue" ? "Overdue"
    : humanize(p.status) });
}

function caseCard(id, p) {
  const box = card(`Case #${id}`, p.category, [
    ["Status", humanize(p.status)],
    ["Reported", p.reported_at ? formatTime(p.reported_at * 1000) : "–"],
    ["Urgency", p.urgency],
  ]);
  box.classList.add("popup-case");
  box.dataset.caseId = id;
  box.querySelector(".area-title").append(" ", statusChip(p));
  getJSON(`/api/cases/${id}`).then((f) => {
    const c = f.properties;
    box.replaceChildren(...card(`Case #${id}`, `${c.category_name} · ${c.category}`, [
      ["Status", humanize(c.status)],
      ["Reported", formatTime(c.reported_at)],
      ["Due", formatTime(c.due_at)],
      ["Closed", c.closed_at ? formatTime(c.closed_at) : null],
      ["Grid", c.area_name ? `${c.area_name}` : null],
      ["Grid code", c.area_code, "code"],
      ["Department", c.department],
      ["Channel", humanize(c.channel)],
    ]).childNodes);
    box.querySelector(".area-title").append(" ", statusChip(c));
    box.dataset.loaded = "true";
  }).catch((err) => {
    box.append(el("p.muted", { textContent: `Details unavailable: ${err.message}` }));
  });
  return box;
}

function featureCard(f) {
  const p = f.properties;
  switch (f.layer.id) {
    case "cases-point":
      return caseCard(f.id, p);
    case "cases-agg":
      return card(`${nf.format(p.count)} ${p.count === 1 ? "case" : "cases"} here`,
        "Zoom in to see them one by one", [["Open", nf.format(p.open)],
          ["Closed", nf.format(p.count - p.open)]]);
    case "facilities":
      return card(p.name || humanize(p.type), humanize(p.type), [
        ["Capacity", p.capacity == null ? null : nf.format(p.capacity)],
        ["Hours", p.hours],
        ["Serves within", p.service_radius_m ? `${nf.format(p.service_radius_m)} m` : null],
        ["Serves within", p.service_minutes ? `${nf.format(p.service_minutes)} min` : null],
      ]);
    case "components":
      return card(humanize(p.kind), "Component (city asset)", [
        ["Code", p.code, "code"], ["State", humanize(p.state)], ["Category", p.category]]);
    case "zones-line":
      return card(p.name, humanize(p.kind), [["Code", p.code, "code"],
        ["Organisation", p.organisation], ["Department", p.department]]);
    case "roads":
      return card(p.name || humanize(p.highway), "Road", [["Class", humanize(p.highway)],
        ["One way", p.oneway ? "yes" : "no"],
        ["Speed limit", p.maxspeed_kmh ? `${p.maxspeed_kmh} km/h` : null]]);
    case "responders":
      return card(humanize(p.kind), "Responder on duty", [["Status", humanize(p.status)],
        ["Department", p.department],
        ["Position at", p.position_at ? formatTime(p.position_at * 1000) : null]]);
    default:
      return areaCard(p);
  }
}

function openPopup(lngLat, f) {
  const content = featureCard(f);
  content.classList.add("popup", `popup-${f.layer.id}`);
  if (f.properties.code) content.dataset.code = f.properties.code;
  popup.setLngLat(lngLat).setDOMContent(content).addTo(map);
  return content;
}

function nearest(features, point) {
  // Dense points overlap: take the one whose centre is nearest the click, not the first found.
  let best = null, bestD = Infinity;
  for (const f of features) {
    if (f.geometry.type !== "Point") return features[0];
    const p = map.project(f.geometry.coordinates);
    const d = Math.hypot(p.x - point.x, p.y - point.y);
    if (d < bestD) { bestD = d; best = f; }
  }
  return best;
}

function hitAt(point) {
  const box = [[point.x - CLICK_TOLERANCE, point.y - CLICK_TOLERANCE],
    [point.x + CLICK_TOLERANCE, point.y + CLICK_TOLERANCE]];
  const shown = (ids) => ids.filter((id) => map.getLayer(id)
    && map.getLayoutProperty(id, "visibility") !== "none");
  for (const id of shown([...POINT_LAYERS, ...LINE_LAYERS])) {
    const found = map.queryRenderedFeatures(box, { layers: [id] });
    if (found.length) return nearest(found, point);
  }
  const src = sourceOfLevel(state.level);
  const [area] = shown([`${src}-fill`]).length
    ? map.queryRenderedFeatures(point, { layers: [`${src}-fill`] }) : [];
  return area ?? null;
}

// ---------------------------------------------------------------------------------------------
// Selection, hover

function highlight(code, source = null) {
  state.selected = code ? { code, source } : null;
  for (const src of LEVEL_SOURCES) {
    if (map.getLayer(`${src}-highlight`)) {
      map.setFilter(`${src}-highlight`, ["==", ["get", "code"],
        code && src === source ? code : ""]);
    }
  }
}

function selectCase(id) {
  state.selectedCase = id;
  if (map.getLayer("cases-selected")) {
    map.setFilter("cases-selected", ["==", ["id"], id ?? -1]);
  }
}

function showSelected(props) {
  $("#selected-card").hidden = !props;
  $("#selected").replaceChildren(...(props ? [areaCard(props)] : []));
}

let hovered = null;
function clearHover() {
  if (hovered) map.setFeatureState(hovered, { hover: false });
  hovered = null;
  $("#hover").hidden = true;
  map.getCanvas().style.cursor = "";
}

async function selectArea(code, levelName = null) {
  let feature;
  try {
    feature = await getJSON(`/api/areas/${encodeURIComponent(code)}`);
  } catch (err) {
    setStatus(err.status === 404 ? `No area with code ${code}.` : err.message, true);
    return null;
  }
  const p = feature.properties;
  const name = levelName ?? p.level_name;
  const lv = levelOf(name) ?? state.levels.find((l) => l.rank === p.level);
  if (!lv) return null;
  if (lv.name !== state.level) await setLevel(lv.name, { zoomIn: false });
  highlight(p.code, lv.source);
  showSelected(p);
  popup.remove();
  const [[x0, y0], [x1, y1]] = bboxFromFeature(feature);
  map.fitBounds([[x0, y0], [x1, y1]], { padding: 80, maxZoom: 17,
    duration: reducedMotion ? 0 : 700 });
  setStatus(`Showing ${lv.name} ${p.name} (${p.code}).`);
  return feature;
}

function bboxFromFeature(f) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  const walk = (c) => {
    if (typeof c[0] === "number") {
      x0 = Math.min(x0, c[0]); x1 = Math.max(x1, c[0]);
      y0 = Math.min(y0, c[1]); y1 = Math.max(y1, c[1]);
    } else c.forEach(walk);
  };
  walk(f.geometry.coordinates);
  return [[x0, y0], [x1, y1]];
}

// ---------------------------------------------------------------------------------------------
// Locate: the chain of areas containing a point

let locateSeq = 0;
const pin = new maplibregl.Marker({ color: HIGHLIGHT, scale: 0.7 });

async function locate(lon, lat) {
  const seq = ++locateSeq;
  const box = $("#locate");
  pin.setLngLat([lon, lat]).addTo(map);
  box.replaceChildren(el("p.muted", { textContent: "Looking up…" }));
  let result;
  try {
    result = await getJSON("/api/locate", { lon: lon.toFixed(7), lat: lat.toFixed(7) });
  } catch (err) {
    if (seq !== locateSeq) return null;
    const msg = err.status === 404 ? "No area contains this point."
      : `Lookup failed: ${err.message}`;
    box.replaceChildren(el("p.muted", { textContent: msg }));
    return null;
  }
  if (seq !== locateSeq) return result; // a newer click won
  const ol = el("ol.chain", { "aria-label": "Areas containing the point, from the top level down" });
  for (const a of result.areas) {
    const btn = el("button", { type: "button", textContent: a.name,
      "aria-label": `Show ${a.level} ${a.name} (${a.code}) on the map` });
    btn.addEventListener("click", () => selectArea(a.code, a.level).catch(reportError));
    ol.append(el("li", { dataset: { code: a.code, level: a.level } },
      el("span.lvl", {}, a.level, el("span.code", { textContent: a.code })),
      btn,
      el("span.hh", { textContent: `${nf.format(a.households)} households · `
        + `${nf.format(a.population)} residents · ${nf1.format(a.area_m2 / 10000)} ha` })));
  }
  const parts = [el("p.coords", { textContent: `${lat.toFixed(5)}° N, ${lon.toFixed(5)}° E` }),
    ol];
  if (result.zones?.length) {
    parts.push(el("div.zones", {}, el("h3", { textContent: "Responsibility zones" }),
      el("ul", {}, result.zones.map((z) => el("li", { dataset: { kind: z.kind } },
        el("span.lvl", { textContent: String(z.kind).replaceAll("_", " ") }),
        el("span.zone-name", { textContent: z.name }),
        (z.department ?? z.organisation) ? el("span.hh", {
          textContent: z.department ?? z.organisation }) : null)))));
  }
  box.replaceChildren(...parts);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Search (server side: /api/search)

async function findAreas(query, limit = 8) {
  const q = query.trim();
  if (!q) return [];
  const body = await getJSON("/api/search", { q, limit });
  return body.areas;
}

async function search(query) {
  const [best] = await findAreas(query, 1);
  if (!best) {
    setStatus(`No area matches “${query}”.`, true);
    return null;
  }
  return selectArea(best.code, best.level_name);
}

function setupSearch() {
  const input = $("#search-input");
  const list = $("#search-results");
  let results = [];
  let active = -1;
  let seq = 0;

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
      list.append(el("li.empty", { textContent: `No area matches “${input.value.trim()}”`,
        role: "option", "aria-disabled": "true" }));
    }
    results.forEach((a, i) => {
      const li = el("li", { id: `search-option-${i}`, role: "option",
        "aria-selected": String(i === active), dataset: { code: a.code } },
      el("span.name", { textContent: a.name }),
      el("span.meta", {}, cap(a.level_name), el("span.code", { textContent: a.code }),
        a.parent_name ? el("span.parent", { textContent: ` · ${a.parent_name}` }) : null));
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
  const choose = (i) => {
    const a = results[i];
    close();
    if (a) {
      input.value = a.code;
      selectArea(a.code, a.level_name).catch(reportError);
    }
  };
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const mine = ++seq;
    timer = setTimeout(async () => {
      try {
        const found = await findAreas(input.value);
        if (mine !== seq) return; // typed on
        results = found;
        active = results.length ? 0 : -1;
        render();
      } catch (err) {
        reportError(err);
      }
    }, 120);
  });
  input.addEventListener("keydown", async (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (!results.length) return;
      ev.preventDefault();
      active = (active + (ev.key === "ArrowDown" ? 1 : -1) + results.length) % results.length;
      render();
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      clearTimeout(timer);
      seq += 1;
      if (list.hidden || active < 0 || results[active]?.code === undefined) {
        close();
        await search(input.value).catch(reportError);
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
  const box = $("#status");
  box.textContent = text;
  box.classList.toggle("error", isError);
}

function reportError(err) {
  setStatus(err instanceof ApiError ? err.message : `Something went wrong: ${err.message}`, true);
}

// ---------------------------------------------------------------------------------------------
// Interaction

function setupInteraction() {
  map.on("mousemove", (e) => {
    const src = sourceOfLevel(state.level);
    const fillId = `${src}-fill`;
    const visible = map.getLayer(fillId) && map.getLayoutProperty(fillId, "visibility") !== "none";
    const [f] = visible ? map.queryRenderedFeatures(e.point, { layers: [fillId] }) : [];
    const overPoint = hitAt(e.point);
    map.getCanvas().style.cursor = overPoint ? "pointer" : "";
    if (!f) {
      if (hovered) clearHover();
      return;
    }
    const key = { source: src, sourceLayer: src, id: f.id };
    if (!hovered || hovered.id !== f.id || hovered.source !== src) {
      clearHover();
      hovered = key;
      map.setFeatureState(key, { hover: true });
    }
    map.getCanvas().style.cursor = "pointer";
    const chip = $("#hover");
    chip.replaceChildren(document.createTextNode(f.properties.name),
      el("span.code", { textContent: f.properties.code }));
    chip.hidden = false;
  });
  map.on("mouseout", clearHover);

  map.on("click", (e) => {
    const f = hitAt(e.point);
    if (f) {
      openPopup(e.lngLat, f);
      if (LEVEL_SOURCES.includes(f.layer.source) && f.layer.id.endsWith("-fill")) {
        highlight(f.properties.code, f.layer.source);
        showSelected(null);
      }
      selectCase(f.layer.id === "cases-point" ? f.id : null);
    } else {
      popup.remove();
      selectCase(null);
    }
    locate(e.lngLat.lng, e.lngLat.lat).catch(reportError);
  });
  map.on("zoomend", renderLayerSwitcher);
  map.on("moveend", updateCaseSummary);
  map.on("sourcedata", (e) => {
    if (e.sourceId === "cases" && e.isSourceLoaded) updateCaseSummary();
  });
}

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
  const me = await whoAmI().catch(() => ({ role: "public" }));
  state.me = me;
  const [style, levels, registry] = await Promise.all([
    loadStyle("default", me), getJSON("/api/stats/levels"), getJSON("/tiles"),
  ]);
  for (const l of registry.layers) {
    if (l.name === "responders" && !maySeeRestricted(me)) continue;
    state.layerInfo.set(l.name, { title: l.title, minzoom: l.minzoom, maxzoom: l.maxzoom });
  }
  state.levels = levels.levels.filter((l) => l.rank < LEVEL_SOURCES.length).map((l) => ({
    ...l, source: LEVEL_SOURCES[l.rank] }));
  state.bbox = levels.bbox;
  if (style.sources.cases) style.sources.cases.url = casesTileJSON();
  await createMap(augmentStyle(style));
  setupInteraction();
  setupSearch();
  setupTimeFilter();
  $("#loading").hidden = true;
  if (!state.levels.length) {
    renderLayerSwitcher();
    renderLegend();
    setStatus("No areas are loaded yet. Run `gridgov demo` to load the demo city.", true);
    return;
  }
  // Start on the bottom level (the management grids), showing everything there is.
  state.level = state.levels[state.levels.length - 1].name;
  renderLevelSwitcher();
  await setLevel(state.level, { zoomIn: false });
  await whenIdle(map);
  renderLayerSwitcher();
  updateCaseSummary();
}

window.gridgov = {
  map: null,
  state,
  setLevel: (name) => setLevel(name).then(() => whenIdle(map)),
  setLayerVisible,
  setTimeFilter,
  search,
  selectArea,
  findAreas,
  locate,
  fitToData,
  casesInView,
  whenIdle: () => whenIdle(map),
};

window.gridgov.ready = start().catch((err) => {
  $("#loading").hidden = true;
  reportError(err);
  throw err;
});
