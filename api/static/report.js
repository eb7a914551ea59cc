// gridgov public report page (/report) and tracking page (/report/track/{token}).
//
// Plain ES module, no build step; MapLibre GL JS is the vendored UMD bundle (window.maplibregl)
// and every request goes to this server. The report is sent as multipart to POST /api/cases with
// an Idempotency-Key made in the browser: a retry after a lost answer, or a double click, gets
// the very same case back instead of a second one. `window.gridgov` is a small hook for the
// browser tests.

const maplibregl = window.maplibregl;
const $ = (sel) => document.querySelector(sel);
const nf = new Intl.NumberFormat("en");
const dtf = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short" });
const fmtTime = (iso) => (iso ? dtf.format(new Date(iso)) : "–");

const MAX_PHOTO_BYTES = 5 * 1024 * 1024;
const PHOTO_TYPES = ["image/jpeg", "image/png", "image/webp"];
const OPEN_STATES = ["reported", "accepted", "filed", "redirected", "dispatched", "in_progress",
  "handled", "verified", "reopened"];
const STATUS_TEXT = {
  reported: "Received", accepted: "Registered · 已受理", filed: "Filed · 已立案",
  redirected: "Handed over", dispatched: "Dispatched · 已派遣", in_progress: "Being fixed · 处置中",
  handled: "Fixed, awaiting check", verified: "Fix verified · 已核查", reopened: "Reopened",
  closed: "Closed · 已结案", rejected: "Not a case · 不予立案",
};
const EVENT_TEXT = {
  report: "Reported", accept: "Registered by the call centre (受理)", file: "Filed as a case (立案)",
  reject: "Closed without action", redirect: "Handed over to another department",
  dispatch: "Dispatched to the responsible department", start: "Work started",
  handle: "Work reported done", verify: "Checked on site", close: "Closed (结案)",
  reopen: "Reopened", rate: "Rated by the reporter", summon: "A department was summoned (吹哨)",
  respond: "The summoned department reported in (报到)",
  duplicate: "Linked to an earlier report of the same problem",
  duplicate_linked: "A similar report was linked to this one",
  escalate: "Escalated: past its deadline", import: "Imported",
};

// ---------------------------------------------------------------------------------------------
// API
class ApiError extends Error {
  constructor(status, detail, field) {
    super(detail);
    this.status = status;
    this.field = field;
  }
}

async function api(path, { params, method = "GET", body, headers = {} } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  let resp;
  try {
    resp = await fetch(url, { method, body, headers: { Accept: "application/json", ...headers } });
  } catch (err) {
    throw new ApiError(0, "network", null);
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    let detail = resp.statusText;
    if (data && typeof data.detail === "string") detail = data.detail;
    else if (Array.isArray(data) && data[0]?.description) detail = data[0].description;
    throw new ApiError(resp.status, detail, data?.field ?? null);
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// Map: grid outlines from this server's vector tiles, open cases as GeoJSON, a draggable pin.
const origin = window.location.origin;
const EMPTY_FC = { type: "FeatureCollection", features: [] };
const map = new maplibregl.Map({
  container: "map",
  attributionControl: false,
  center: [0, 0],
  zoom: 1,
  fadeDuration: 0,
  style: {
    version: 8,
    sources: {
      districts: { type: "vector", url: `${origin}/tiles/districts.json` },
      streets: { type: "vector", url: `${origin}/tiles/streets.json` },
      grids: { type: "vector", url: `${origin}/tiles/grids.json` },
      open: { type: "geojson", data: EMPTY_FC },
      mine: { type: "geojson", data: EMPTY_FC },
    },
    layers: [
      { id: "background", type: "background", paint: { "background-color": "#e9edf1" } },
      { id: "districts-fill", type: "fill", source: "districts", "source-layer": "districts",
        paint: { "fill-color": "#f7f8f5" } },
      { id: "grids-fill", type: "fill", source: "grids", "source-layer": "grids",
        paint: { "fill-color": "#ffffff", "fill-opacity": 0.7 } },
      { id: "grids-line", type: "line", source: "grids", "source-layer": "grids",
        paint: { "line-color": "#9fb3c8", "line-width": 0.8 } },
      { id: "streets-line", type: "line", source: "streets", "source-layer": "streets",
        paint: { "line-color": "#0b5c8a", "line-width": 1.6, "line-opacity": 0.7 } },
      { id: "districts-line", type: "line", source: "districts", "source-layer": "districts",
        paint: { "line-color": "#1b2733", "line-width": 2 } },
      { id: "open-cases", type: "circle", source: "open",
        paint: {
          "circle-radius": 6, "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5,
          "circle-color": ["case", ["get", "overdue"], "#c51b8a", "#e31a1c"],
        } },
      { id: "mine", type: "circle", source: "mine",
        paint: { "circle-radius": 9, "circle-color": "#f26b1d", "circle-stroke-color": "#fff",
          "circle-stroke-width": 2 } },
    ],
  },
});
map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
const loaded = new Promise((resolve) => map.once("load", resolve));
const whenIdle = () => new Promise((resolve) => {
  if (map.loaded() && !map.isMoving()) resolve();
  else map.once("idle", resolve);
});

async function fitToData() {
  const tj = await api("/tiles/districts.json").catch(() => null);
  if (tj?.bounds && tj.bounds.every(Number.isFinite)) {
    const [x0, y0, x1, y1] = tj.bounds;
    map.fitBounds([[x0, y0], [x1, y1]], { padding: 30, duration: 0 });
  }
}

function fitTo([x0, y0, x1, y1]) {
  map.fitBounds([[x0, y0], [x1, y1]], { padding: 40, duration: 0 });
  return whenIdle();
}

// ---------------------------------------------------------------------------------------------
// Transparency: open cases in view, overdue, median time to close, departments.
let transparencySeq = 0;
async function refreshTransparency() {
  const seq = ++transparencySeq;
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const bbox = [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90),
    clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)].map((v) => v.toFixed(6)).join(",");
  if (map.getZoom() < 10) {
    map.getSource("open").setData(EMPTY_FC);
    for (const id of ["#kpi-open", "#kpi-overdue", "#kpi-close"]) $(id).textContent = "–";
    $("#kpi-deps").innerHTML = '<li class="muted">Zoom in to see the cases here.</li>';
    return;
  }
  const [open, closed] = await Promise.all([
    api("/api/cases", { params: { bbox, status: OPEN_STATES.join(","), limit: 500 } }),
    api("/api/cases", { params: { bbox, status: "closed", limit: 200 } }),
  ]);
  if (seq !== transparencySeq) return;
  map.getSource("open").setData({ type: "FeatureCollection", features: open.features });
  const feats = open.features.map((f) => f.properties);
  $("#kpi-open").textContent = nf.format(feats.length) + (open.next_cursor ? "+" : "");
  $("#kpi-overdue").textContent = nf.format(feats.filter((p) => p.overdue).length);
  const hours = closed.features
    .map((f) => (Date.parse(f.properties.closed_at) - Date.parse(f.properties.reported_at)) / 36e5)
    .filter(Number.isFinite).sort((a, b) => a - b);
  $("#kpi-close").textContent = hours.length ? humanHours(hours[Math.floor(hours.length / 2)]) : "–";
  const byDep = new Map();
  for (const p of feats) byDep.set(p.department || "unassigned", (byDep.get(p.department || "unassigned") || 0) + 1);
  const deps = [...byDep.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
  const list = $("#kpi-deps");
  list.replaceChildren(...deps.map(([dep, n]) => {
    const li = document.createElement("li");
    li.innerHTML = "<span></span><b></b>";
    li.firstChild.textContent = dep;
    li.lastChild.textContent = nf.format(n);
    return li;
  }));
  if (!deps.length) list.innerHTML = '<li class="muted">No open cases in view.</li>';
}

function humanHours(h) {
  if (h < 1) return `${Math.max(1, Math.round(h * 60))} min`;
  if (h < 48) return `${h.toFixed(h < 10 ? 1 : 0)} h`;
  return `${(h / 24).toFixed(1)} d`;
}

let moveTimer = null;
map.on("moveend", () => {
  clearTimeout(moveTimer);
  moveTimer = setTimeout(() => refreshTransparency().catch(showBackgroundError), 250);
});

map.on("click", "open-cases", (e) => {
  const p = e.features[0].properties;
  const el = document.createElement("div");
  el.innerHTML = '<p class="what" style="font-weight:600"></p><dl class="facts"></dl>';
  el.firstChild.textContent = p.category_name;
  const facts = [["Status", STATUS_TEXT[p.status] || p.status], ["Responsible", p.department || "–"],
    ["Reported", fmtTime(p.reported_at)], ["Due", fmtTime(p.due_at)]];
  for (const [k, v] of facts) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    el.lastChild.append(dt, dd);
  }
  new maplibregl.Popup({ closeButton: true }).setLngLat(e.lngLat).setDOMContent(el).addTo(map);
});
map.on("mouseenter", "open-cases", () => { map.getCanvas().style.cursor = "pointer"; });
map.on("mouseleave", "open-cases", () => { map.getCanvas().style.cursor = ""; });

function showBackgroundError(err) {
  // Background refreshes must not interrupt the reporter; say it quietly.
  $("#kpi-deps").innerHTML = '<li class="muted"></li>';
  $("#kpi-deps").firstChild.textContent = `Could not load cases here (${err.message}).`;
}

// ---------------------------------------------------------------------------------------------
// The report form
const form = $("#report-form");
const state = {
  categories: [],     // every category row from /api/categories
  pin: null,          // {lon, lat}
  place: null,        // the grid chain from /api/locate, or null when outside
  marker: null,
  pending: null,      // {key, fingerprint} of a send that did not get an answer
  sending: false,
};

function option(value, label) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  return o;
}

const kindLabel = (kind) => (kind === "event" ? "Events · 事件" : "City assets · 部件");
const bilingual = (c) => (c.name_zh ? `${c.name} · ${c.name_zh}` : c.name);

async function loadCategories() {
  const { categories } = await api("/api/categories", { params: { active: true } });
  state.categories = categories;
  const domains = categories.filter((c) => c.depth === 0);
  const select = $("#domain");
  for (const kind of ["event", "component"]) {
    const group = document.createElement("optgroup");
    group.label = kindLabel(kind);
    for (const d of domains.filter((c) => c.kind === kind)) group.append(option(d.code, bilingual(d)));
    if (group.children.length) select.append(group);
  }
}

function fillMinors() {
  const domain = $("#domain").value;
  const select = $("#category");
  select.replaceChildren(option("", domain ? "Choose the problem…" : "Choose the kind first"));
  select.disabled = !domain;
  if (!domain) return;
  for (const major of state.categories.filter((c) => c.parent === domain)) {
    const group = document.createElement("optgroup");
    group.label = bilingual(major);
    for (const m of state.categories.filter((c) => c.parent === major.code && c.leaf)) {
      group.append(option(m.code, bilingual(m)));
    }
    if (group.children.length) select.append(group);
  }
}

async function setPin(lon, lat) {
  state.pin = { lon, lat };
  $("#lon").value = lon.toFixed(7);
  $("#lat").value = lat.toFixed(7);
  if (!state.marker) {
    state.marker = new maplibregl.Marker({ color: "#f26b1d", draggable: true })
      .setLngLat([lon, lat]).addTo(map);
    state.marker.on("dragend", () => {
      const p = state.marker.getLngLat();
      setPin(p.lng, p.lat).catch(showFormError);
    });
  } else {
    state.marker.setLngLat([lon, lat]);
  }
  $("#map-hint").hidden = true;
  clearInvalid("where");
  const box = $("#place");
  box.innerHTML = '<span class="muted">Finding the grid…</span>';
  try {
    const found = await api("/api/locate", { params: { lon: lon.toFixed(7), lat: lat.toFixed(7) } });
    state.place = found.areas;
    const grid = found.areas[found.areas.length - 1];
    const street = found.areas.find((a) => a.level === "street");
    box.innerHTML = "<strong></strong><span class=\"muted\"></span>";
    box.firstChild.textContent = `${grid.name}`;
    box.lastChild.textContent = `grid ${grid.code}${street ? ` · ${street.name}` : ""} · `
      + `${lat.toFixed(5)}, ${lon.toFixed(5)}`;
  } catch (err) {
    state.place = null;
    if (err.status === 404) {
      box.innerHTML = '<span class="message error" style="display:block"></span>';
      box.firstChild.textContent = "This point is outside the area we serve. Move the pin inside "
        + "a grid (the white cells on the map).";
    } else {
      throw err;
    }
  }
  await showDuplicates();
}

let dupSeq = 0;
async function showDuplicates() {
  const seq = ++dupSeq;
  const box = $("#duplicates");
  const category = $("#category").value;
  if (!state.pin || !state.place || !category) {
    box.replaceChildren();
    return;
  }
  const { cases, radius_m: radius } = await api("/api/cases/nearby", {
    params: { lon: state.pin.lon.toFixed(7), lat: state.pin.lat.toFixed(7), category },
  });
  if (seq !== dupSeq) return;
  if (!cases.length) {
    box.innerHTML = '<p class="hint"></p>';
    box.firstChild.textContent = `No open report of this problem within ${nf.format(radius)} m.`;
    return;
  }
  box.innerHTML = '<p class="message info"></p><ul class="dups" aria-label="Possible duplicates"></ul>';
  box.firstChild.textContent = `Already reported nearby? ${cases.length} open report`
    + `${cases.length > 1 ? "s" : ""} of this problem within ${nf.format(radius)} m. `
    + "You can still send yours: it will be linked to them.";
  for (const c of cases.slice(0, 5)) {
    const li = document.createElement("li");
    li.innerHTML = "<b></b> <span class=\"badge\"></span><div class=\"meta\"></div>";
    li.children[0].textContent = c.category_name;
    li.children[1].textContent = STATUS_TEXT[c.status] || c.status;
    li.children[2].textContent = `${nf.format(Math.round(c.distance_m))} m away · reported `
      + `${fmtTime(c.reported_at)}${c.description ? ` · “${c.description.slice(0, 80)}”` : ""}`;
    box.lastChild.append(li);
  }
}

const FIELD_INPUT = {
  category: "#category", location: "where", lon: "where", lat: "where", description: "#description",
  "contact.name": "#contact-name", "contact.phone": "#contact-phone", "contact.email": "#contact-email",
};

function markInvalid(field) {
  const target = FIELD_INPUT[field] || (field?.startsWith("photos") ? "#photo" : null);
  if (target === "where") {
    $("#where-title").closest(".card").setAttribute("aria-invalid", "true");
    return;
  }
  const el = target && $(target);
  if (el) {
    el.setAttribute("aria-invalid", "true");
    if (el.tagName === "INPUT" && el.closest("details")) el.closest("details").open = true;
    el.focus();
  }
}

function clearInvalid(which) {
  if (which === "where") $("#where-title").closest(".card").removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll("[aria-invalid]")) {
    if (which === undefined || el === which) el.removeAttribute("aria-invalid");
  }
}

function showFormError(err, field) {
  const box = $("#form-message");
  box.className = "message error";
  if (err instanceof ApiError && err.status === 0) {
    box.textContent = "Could not reach the server: your report may not have arrived. Press "
      + "“Send report” again — it will not be sent twice.";
  } else {
    box.textContent = err.message || String(err);
  }
  markInvalid(field ?? err.field);
}

function clearFormError() {
  const box = $("#form-message");
  box.className = "";
  box.textContent = "";
}

function checkForm() {
  const photo = $("#photo").files[0];
  if (!state.pin) return ["Put a pin on the map where the problem is.", "location"];
  if (!state.place) return ["The pin is outside the area we serve: move it inside a grid.", "location"];
  if (!$("#domain").value) return ["Choose what kind of problem it is.", "domain"];
  if (!$("#category").value) return ["Choose the problem from the list.", "category"];
  if (photo && !PHOTO_TYPES.includes(photo.type)) {
    return [`The photo must be a JPEG, PNG or WebP image, not ${photo.type || "this kind of file"}.`, "photos[0]"];
  }
  if (photo && photo.size > MAX_PHOTO_BYTES) {
    return [`The photo is ${(photo.size / 1048576).toFixed(1)} MB; the limit is 5 MB.`, "photos[0]"];
  }
  const email = $("#contact-email").value.trim();
  if (email && !/^[^@\s]+@[^@\s]+$/.test(email)) return ["The e-mail address looks wrong.", "contact.email"];
  return null;
}

function formFields() {
  const fields = {
    category: $("#category").value, channel: "app", lon: $("#lon").value, lat: $("#lat").value,
    description: $("#description").value.trim(),
    contact_name: $("#contact-name").value.trim(), contact_phone: $("#contact-phone").value.trim(),
    contact_email: $("#contact-email").value.trim(),
  };
  const photo = $("#photo").files[0];
  const fingerprint = JSON.stringify([fields, photo ? [photo.name, photo.size, photo.lastModified] : null]);
  return { fields, photo, fingerprint };
}

function newKey() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function submit(event) {
  event.preventDefault();
  if (state.sending) return; // a double click sends once
  clearFormError();
  clearInvalid();
  const problem = checkForm();
  if (problem) {
    showFormError(new Error(problem[0]), problem[1] === "domain" ? "category" : problem[1]);
    if (problem[1] === "domain") $("#domain").focus();
    return;
  }
  const { fields, photo, fingerprint } = formFields();
  // The same content keeps the same key until it is acknowledged: retries are safe.
  if (!state.pending || state.pending.fingerprint !== fingerprint) {
    state.pending = { key: newKey(), fingerprint };
  }
  const body = new FormData();
  for (const [k, v] of Object.entries(fields)) if (v) body.append(k, v);
  if (photo) body.append("photos", photo, photo.name);
  state.sending = true;
  $("#submit").disabled = true;
  $("#submit-status").textContent = "Sending…";
  try {
    const result = await api("/api/cases", {
      method: "POST", body, headers: { "Idempotency-Key": state.pending.key },
    });
    state.pending = null;
    showSent(result);
  } catch (err) {
    showFormError(err);
  } finally {
    state.sending = false;
    $("#submit").disabled = false;
    $("#submit-status").textContent = "";
  }
}

function showSent(result) {
  const url = `${origin}/report/track/${encodeURIComponent(result.tracking_token)}`;
  form.hidden = true;
  const card = $("#sent");
  card.hidden = false;
  $("#sent-summary").textContent = `Report #${result.id} (${result.category_name}) is with `
    + `${result.department || "the call centre"} for grid ${result.area_code}`
    + `${result.due_at ? `; expected by ${fmtTime(result.due_at)}` : ""}.`;
  $("#track-url").value = url;
  $("#track-open").href = url;
  card.focus();
  window.gridgov.lastResult = result;
  refreshTransparency().catch(showBackgroundError);
}

async function copyLink() {
  const input = $("#track-url");
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    $("#copy-link").textContent = "Copied";
  } catch {
    $("#copy-link").textContent = "Select and copy";
  }
}

// ---------------------------------------------------------------------------------------------
// The tracking page
async function showTracking(token) {
  $("#mode-title").textContent = "Track your report · 查询进度";
  $("#map-hint").hidden = true;
  $("#track").hidden = false;
  const body = $("#track-body");
  let id;
  try {
    [{ service_request_id: id }] = await api(`/open311/v2/tokens/${encodeURIComponent(token)}.json`);
  } catch (err) {
    body.innerHTML = '<p class="message error"></p>';
    body.firstChild.textContent = err.status === 404
      ? "We could not find a report for this link. Check that you copied the whole link."
      : `Could not load the report (${err.message}).`;
    return;
  }
  const [feature, history, [open311]] = await Promise.all([
    api(`/api/cases/${id}`), api(`/api/cases/${id}/events`),
    api(`/open311/v2/requests/${id}.json`),
  ]);
  const c = feature.properties;
  $("#track-title").textContent = `Report #${c.id}`;
  const closed = c.status === "closed" || c.status === "rejected";
  const badge = `badge ${c.status === "closed" ? "closed" : c.status}${c.overdue ? " overdue" : ""}`;
  body.innerHTML = `<p style="margin-bottom:10px"><span class="${badge}" id="track-status"></span>
    <span class="muted" id="track-overdue"></span></p><dl class="facts" id="track-facts"></dl>`;
  $("#track-status").textContent = STATUS_TEXT[c.status] || c.status;
  $("#track-status").dataset.status = c.status;
  if (c.overdue) $("#track-overdue").textContent = "past its deadline";
  const facts = [
    ["Problem", `${c.category_name} (${c.category})`],
    ["Where", `${c.area_name || ""} · grid ${c.area_code || "–"}`],
    ["Responsible", open311.agency_responsible || c.department || "–"],
    ["Progress", open311.status_notes],
    ["Reported", fmtTime(c.reported_at)],
    [closed ? "Closed" : "Expected by", closed ? fmtTime(c.closed_at) : fmtTime(c.due_at)],
  ];
  if (c.description) facts.push(["Description", c.description]);
  if (c.duplicate_of) facts.push(["Linked to", `report #${c.duplicate_of}`]);
  for (const [k, v] of facts) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    $("#track-facts").append(dt, dd);
  }
  const list = $("#history");
  list.replaceChildren(...history.events.map((e) => {
    const li = document.createElement("li");
    li.dataset.action = e.action;
    li.innerHTML = '<span class="what"></span><span class="when"></span>';
    let what = EVENT_TEXT[e.action] || e.action;
    if (e.action === "verify") what = e.to_state === "verified" ? "Fix verified on site" : "Check on site failed: not fixed yet";
    li.firstChild.textContent = what;
    li.lastChild.textContent = fmtTime(e.at);
    return li;
  }));
  $("#history-card").hidden = false;
  if (feature.geometry) {
    map.getSource("mine").setData({ type: "FeatureCollection", features: [feature] });
    const [lon, lat] = feature.geometry.coordinates;
    map.jumpTo({ center: [lon, lat], zoom: 15 });
  }
  showRating(c, token);
}

function showRating(c, token) {
  const card = $("#rate-card");
  if (c.status !== "closed") { card.hidden = true; return; }
  card.hidden = false;
  if (c.satisfaction) {
    $("#rate-form").hidden = true;
    $("#rate-message").className = "message ok";
    $("#rate-message").textContent = `You rated this ${c.satisfaction} out of 5. Thank you!`;
    return;
  }
  const stars = $("#stars");
  const words = ["very poor", "poor", "fair", "good", "very good"];
  stars.querySelectorAll("label").forEach((l) => l.remove());
  words.forEach((w, i) => {
    const label = document.createElement("label");
    label.innerHTML = `<input type="radio" name="satisfaction" value="${i + 1}"><span></span>`;
    label.lastChild.textContent = `${i + 1} ${w}`;
    stars.append(label);
  });
  $("#rate-form").onsubmit = async (event) => {
    event.preventDefault();
    const chosen = $("#rate-form").querySelector("input:checked");
    const msg = $("#rate-message");
    if (!chosen) {
      msg.className = "message error";
      msg.textContent = "Choose a rating from 1 to 5 first.";
      return;
    }
    try {
      await api(`/api/cases/${c.id}/actions`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ action: "rate", satisfaction: Number(chosen.value), tracking_token: token }),
      });
      $("#rate-form").hidden = true;
      msg.className = "message ok";
      msg.textContent = `Thank you! You rated this ${chosen.value} out of 5.`;
    } catch (err) {
      msg.className = "message error";
      msg.textContent = err.message;
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Start
const trackMatch = window.location.pathname.match(/^\/report\/track\/([^/]+)$/);
const trackToken = trackMatch ? decodeURIComponent(trackMatch[1]) : null;

async function start() {
  await loaded;
  if (trackToken) {
    await showTracking(trackToken);
  } else {
    form.hidden = false;
    await Promise.all([loadCategories(), fitToData()]);
    $("#domain").addEventListener("change", () => { fillMinors(); showDuplicates().catch(showFormError); });
    $("#category").addEventListener("change", () => { clearInvalid($("#category")); showDuplicates().catch(showFormError); });
    $("#description").addEventListener("input", () => {
      $("#description-count").textContent = `${nf.format($("#description").value.length)} / 10,000`;
    });
    $("#photo").addEventListener("change", () => clearInvalid($("#photo")));
    form.addEventListener("submit", submit);
    $("#copy-link").addEventListener("click", copyLink);
    map.on("click", (e) => {
      if (form.hidden) return;
      if (map.queryRenderedFeatures(e.point, { layers: ["open-cases"] }).length) return;
      setPin(e.lngLat.lng, e.lngLat.lat).catch(showFormError);
    });
  }
  await whenIdle();
  await refreshTransparency().catch(showBackgroundError);
}

window.gridgov = {
  map, whenIdle, fitTo, setPin, lastResult: null,
  ready: start(),
};
