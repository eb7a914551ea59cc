// Shared by the map viewer (app.js) and the command screen (command.js): API calls, the style
// from /styles/{name}.json trimmed to what the caller may see, legend entries read from the
// style itself, small DOM and formatting helpers. Plain ES module, no build step.

export const LEVEL_SOURCES = ["districts", "streets", "communities", "grids"];
export const TOKEN_KEY = "gridgov.token"; // a staff bearer token, if the browser has one
// Roles that may see restricted layers (responders): staff, not the public or reporters.
const STAFF_ROLES = new Set(["grid_worker", "call_taker", "dispatcher", "handler", "supervisor",
  "planner", "analyst", "admin"]);

export const nf = new Intl.NumberFormat("en");
export const nf1 = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
export const cap = (s) => String(s ?? "").charAt(0).toUpperCase() + String(s ?? "").slice(1);
export const humanize = (s) => cap(String(s ?? "").replaceAll("_", " "));

export class ApiError extends Error {
  constructor(status, detail, field) {
    super(detail);
    this.status = status;
    this.field = field;
  }
}

function storedToken() {
  try {
    return window.localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled
  }
}

// MapLibre's request hook: tile requests to this server carry the staff token, if any, so
// staff-only layers (responders) load for staff and are refused (401) for everyone else.
export function withToken(url, resourceType) {
  const token = storedToken();
  // tiles and their TileJSON: the responders layer needs a staff token for both
  if (!token || (resourceType !== "Tile" && resourceType !== "Source")) return { url };
  if (new URL(url, window.location.origin).origin !== window.location.origin) return { url };
  return { url, headers: { Authorization: `Bearer ${token}` } };
}

export async function getJSON(path, params = {}, { auth = false, signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  const token = auth ? storedToken() : null;
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(url, { headers, signal });
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    const detail = typeof body.detail === "string" ? body.detail : resp.statusText;
    throw new ApiError(resp.status, detail, body.field);
  }
  return resp.json();
}

/** Who the browser is: the stored token's role, or "public". */
export async function whoAmI() {
  if (!storedToken()) return { role: "public", name: "public" };
  try {
    return await getJSON("/api/me", {}, { auth: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return { role: "public", name: "public" };
    throw err;
  }
}

export const maySeeRestricted = (me) => STAFF_ROLES.has(me?.role);

/** The server's style ``name``, without the layers the caller may not see. */
export async function loadStyle(name, me) {
  const style = await getJSON(`/styles/${name}.json`);
  if (!maySeeRestricted(me)) {
    delete style.sources.responders;
    style.layers = style.layers.filter((l) => l.source !== "responders");
  }
  return style;
}

export function whenIdle(map) {
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

// ---------------------------------------------------------------------------------------------
// Legend entries read from a style layer's paint, so the legend cannot drift from the map.

/** [{value, colour}] of a ["match", input, v1, c1, ..., default] expression, plus
 * {value: null, colour: default}; or one entry for a constant colour. */
export function matchEntries(expr) {
  if (typeof expr === "string") return [{ value: null, colour: expr }];
  if (!Array.isArray(expr)) return [];
  if (expr[0] === "match") {
    const out = [];
    for (let i = 2; i < expr.length - 1; i += 2) {
      const values = Array.isArray(expr[i]) ? expr[i] : [expr[i]];
      for (const v of values) out.push({ value: v, colour: expr[i + 1] });
    }
    out.push({ value: null, colour: expr[expr.length - 1] });
    return out;
  }
  if (expr[0] === "case") {
    const out = [];
    for (let i = 1; i < expr.length - 1; i += 2) {
      const cond = expr[i];
      const prop = Array.isArray(cond) && cond[0] === "get" ? cond[1] : JSON.stringify(cond);
      out.push({ value: prop, colour: expr[i + 1] });
    }
    out.push({ value: null, colour: expr[expr.length - 1] });
    return out;
  }
  return [];
}

/** Same colours merged: [{values: [...], colour}] in first-seen order. */
export function byColour(entries) {
  const groups = new Map();
  for (const e of entries) {
    const g = groups.get(e.colour) ?? { values: [], colour: e.colour };
    g.values.push(e.value);
    groups.set(e.colour, g);
  }
  return [...groups.values()];
}

// ---------------------------------------------------------------------------------------------
// DOM

/** el("p.cls", {textContent: "x", dataset: {a: 1}}, child...) */
export function el(spec, props = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") Object.assign(node.style, v);
    else if (k.startsWith("aria-") || k === "role" || k === "for") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function factsList(rows) {
  const dl = el("dl.facts");
  for (const [k, v, cls] of rows) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", { textContent: k }), el(`dd${cls ? "." + cls : ""}`, { textContent: v }));
  }
  return dl;
}

// ---------------------------------------------------------------------------------------------
// Time

const dtf = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short",
  hour: "2-digit", minute: "2-digit" });
export const formatTime = (iso) => (iso ? dtf.format(new Date(iso)) : "–");

/** "2 d 3 h", "3 h 10 min", "12 min" */
export function duration(ms) {
  const m = Math.max(0, Math.round(ms / 60000));
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function bboxOfGeometry(geometry) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  const walk = (c) => {
    if (typeof c[0] === "number") {
      x0 = Math.min(x0, c[0]); x1 = Math.max(x1, c[0]);
      y0 = Math.min(y0, c[1]); y1 = Math.max(y1, c[1]);
    } else {
      for (const cc of c) walk(cc);
    }
  };
  if (geometry) walk(geometry.coordinates);
  return Number.isFinite(x0) ? [[x0, y0], [x1, y1]] : null;
}

/** Distinct rendered features of some layers (features cut by tile edges appear once). */
export function renderedDistinct(map, layers, key = (f) => f.id ?? f.properties.code) {
  const present = layers.filter((id) => map.getLayer(id));
  if (!present.length) return [];
  const seen = new Map();
  for (const f of map.queryRenderedFeatures({ layers: present })) {
    const k = `${f.layer.id}:${key(f)}`;
    if (!seen.has(k)) seen.set(k, f);
  }
  return [...seen.values()];
}
