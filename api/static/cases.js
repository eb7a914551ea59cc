// gridgov staff case list (/cases): sign in with a bearer token (kept in sessionStorage only),
// filter and page through GET /api/cases, read a case's timeline, and take the lifecycle steps
// that GET /api/cases/workflow allows from its state for this account's role. The server decides
// in the end (scope, supervision separation): a refused step shows the server's reason.

const $ = (sel) => document.querySelector(sel);
const STORAGE_KEY = "gridgov.token";
const PAGE_SIZE = 25;
const dtf = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short" });
const fmtTime = (iso) => (iso ? dtf.format(new Date(iso)) : "–");
const STATUSES = ["reported", "accepted", "filed", "redirected", "dispatched", "in_progress",
  "handled", "verified", "reopened", "closed", "rejected"];
const LABEL = {
  accept: "Accept (受理)", file: "File (立案)", reject: "Reject", redirect: "Redirect",
  dispatch: "Dispatch (派遣)", start: "Start work", handle: "Report done (处置)",
  verify: "Verify (核查)", close: "Close (结案)", reopen: "Reopen", rate: "Record rating",
  summon: "Summon department (吹哨)", respond: "Report in (报到)",
};
// What each action asks for before it is sent.
const NEEDS = {
  reject: ["note!"], reopen: ["note!"], redirect: ["department!", "note"],
  dispatch: ["department", "responder_id", "note"], handle: ["note!"], verify: ["result!", "note"],
  rate: ["satisfaction!"], summon: ["department!", "note"],
};

const state = {
  token: sessionStorage.getItem(STORAGE_KEY),
  me: null,
  workflow: null,
  departments: [],
  cursors: [null], // cursor of each page seen; the last is the current page
  listSeq: 0, // number of the latest list request (loadPage)
  next: null,
  current: null,   // the open case (properties)
};

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, { params, method = "GET", json } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "" && v !== false) url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (json) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(url, { method, headers, body: json ? JSON.stringify(json) : undefined });
  } catch {
    throw new ApiError(0, "could not reach the server; check the connection and retry");
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    throw new ApiError(resp.status, typeof data?.detail === "string" ? data.detail : resp.statusText);
  }
  return data;
}

function message(sel, text, kind = "error") {
  const box = $(sel);
  box.className = text ? `message ${kind}` : "";
  box.textContent = text || "";
}

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// ---------------------------------------------------------------------------------------------
// Signing in
async function signIn(token) {
  state.token = token;
  try {
    state.me = await api("/api/me");
  } catch (err) {
    state.token = null;
    sessionStorage.removeItem(STORAGE_KEY);
    showSignedOut();
    message("#login-message", err.status === 401 ? `Sign-in failed: ${err.message}` : err.message);
    return false;
  }
  if (state.me.role === "public") {
    state.token = null;
    message("#login-message", "That is not an account token.");
    return false;
  }
  sessionStorage.setItem(STORAGE_KEY, token);
  $("#login-form").hidden = true;
  $("#whoami").hidden = false;
  $("#who").textContent = `${state.me.name} · ${state.me.role} · ${state.me.scope}`;
  message("#login-message", "");
  return true;
}

function showSignedOut() {
  $("#login-form").hidden = false;
  $("#whoami").hidden = true;
  $("#detail").hidden = true;
  $("#cases tbody").replaceChildren();
  $("#next").disabled = $("#prev").disabled = true;
  $("#page-info").textContent = "";
  message("#list-message", "Sign in with your account token to see cases.", "info");
}

// ---------------------------------------------------------------------------------------------
// Filters and the list
async function loadOptions() {
  const [workflow, cats] = await Promise.all([api("/api/cases/workflow"), api("/api/categories")]);
  state.workflow = workflow;
  const status = $("#f-status");
  for (const s of STATUSES) status.append(el("option", s.replace("_", " "), { value: s }));
  const category = $("#f-category");
  for (const c of cats.categories) {
    const indent = "\u2003".repeat(c.depth);
    category.append(el("option", `${indent}${c.code} ${c.name}${c.name_zh ? ` · ${c.name_zh}` : ""}`,
      { value: c.code }));
  }
  state.departments = [...new Set(cats.categories.map((c) => c.department).filter(Boolean))].sort();
}

function filterParams() {
  const day = (v) => (v ? `${v}T00:00:00` : undefined);
  let until;
  if ($("#f-until").value) {
    const d = new Date(`${$("#f-until").value}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + 1); // "until" a day includes that day
    until = d.toISOString().slice(0, 19);
  }
  return {
    status: $("#f-status").value, category: $("#f-category").value,
    area: $("#f-area").value.trim(), since: day($("#f-since").value), until,
    overdue: $("#f-overdue").checked ? "true" : undefined,
    mine: $("#f-mine").checked ? "true" : undefined, limit: PAGE_SIZE,
  };
}

async function loadPage(cursor) {
  message("#list-message", "Loading…", "info");
  // Only the latest request may draw: an earlier one (the list loaded at sign-in, say) that
  // answers after a newer one (the filters just applied) would put back its rows and cursor.
  const seq = ++state.listSeq;
  let page;
  try {
    page = await api("/api/cases", { params: { ...filterParams(), cursor } });
  } catch (err) {
    if (seq !== state.listSeq) return;
    message("#list-message", err.message);
    if (err.status === 401) showSignedOut();
    return;
  }
  if (seq !== state.listSeq) return;
  state.next = page.next_cursor;
  const body = $("#cases tbody");
  body.replaceChildren(...page.features.map((f) => row(f.properties)));
  $("#next").disabled = !state.next;
  $("#prev").disabled = state.cursors.length <= 1;
  $("#page-info").textContent = `page ${state.cursors.length} · ${page.numberReturned} case${page.numberReturned === 1 ? "" : "s"}`;
  message("#list-message", page.features.length ? "" : "No case matches these filters.", "info");
}

function badge(c) {
  const span = el("span", c.status.replace("_", " "), { class: `badge ${c.status}${c.overdue ? " overdue" : ""}` });
  if (c.overdue) span.title = "overdue";
  return span;
}

function row(c) {
  const tr = el("tr", undefined, { "data-id": c.id, tabindex: "0", "aria-selected": String(state.current?.id === c.id) });
  const cells = [c.id, fmtTime(c.reported_at), `${c.category} ${c.category_name}`, null,
    c.area_code || "–", c.department || "–", fmtTime(c.due_at)];
  cells.forEach((v, i) => {
    const td = el("td", i === 3 ? undefined : v);
    if (i === 3) td.append(badge(c));
    if (i === 0) td.className = "num";
    tr.append(td);
  });
  const open = () => openCase(c.id);
  tr.addEventListener("click", open);
  tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  return tr;
}

// ---------------------------------------------------------------------------------------------
// One case: facts, timeline, the steps allowed now
async function openCase(id) {
  let feature, history, summons = [];
  try {
    [feature, history] = await Promise.all([api(`/api/cases/${id}`), api(`/api/cases/${id}/events`)]);
    if (state.workflow.actions.respond.roles.includes(state.me.role)) {
      summons = (await api(`/api/cases/${id}/summons`)).summons;
    }
  } catch (err) {
    message("#list-message", err.message);
    return;
  }
  const c = { ...feature.properties };
  state.current = c;
  for (const tr of document.querySelectorAll("#cases tbody tr")) {
    tr.setAttribute("aria-selected", String(Number(tr.dataset.id) === c.id));
  }
  $("#detail").hidden = false;
  $("#detail-title").textContent = `Case #${c.id}`;
  const facts = $("#detail-facts");
  facts.replaceChildren();
  const add = (k, v) => { if (v !== undefined && v !== null && v !== "") facts.append(el("dt", k), el("dd", v)); };
  const st = el("dd");
  st.append(badge(c));
  facts.append(el("dt", "Status"), st);
  add("Category", `${c.category} ${c.category_name}`);
  add("Grid", `${c.area_code} ${c.area_name || ""}`);
  add("Department", c.department);
  add("Channel", c.channel);
  add("Urgency", c.urgency);
  add("Reported", fmtTime(c.reported_at));
  add("Due", `${fmtTime(c.due_at)}${c.overdue ? " (overdue)" : ""}`);
  add("Closed", c.closed_at ? fmtTime(c.closed_at) : null);
  add("Escalation", c.escalation_level ? `level ${c.escalation_level}` : null);
  add("Duplicate of", c.duplicate_of ? `#${c.duplicate_of}` : null);
  add("Satisfaction", c.satisfaction ? `${c.satisfaction} / 5` : null);
  add("Description", c.description);
  if (c.reporter_contact) {
    add("Reporter", Object.entries(c.reporter_contact).map(([k, v]) => `${k}: ${v}`).join(" · "));
  }
  if (c.in_scope === false) add("Scope", "outside your scope: read only");

  const timeline = $("#timeline");
  timeline.replaceChildren(...history.events.map((e) => {
    const li = el("li", undefined, { "data-action": e.action });
    li.append(el("span", e.to_state && e.to_state !== e.from_state ? `${e.action} → ${e.to_state}` : e.action, { class: "what" }));
    li.append(el("span", `${fmtTime(e.at)}${e.actor ? ` · ${e.actor}${e.actor_role ? ` (${e.actor_role})` : ""}` : ""}`, { class: "when" }));
    if (e.note) li.append(el("span", e.note, { class: "note" }));
    return li;
  }));
  renderActions(c, history.events, summons);
}

function allowedActions(c, events, summons) {
  if (!c.in_scope) return [];
  const me = state.me;
  const handledByMe = events.some((e) => e.action === "handle" && e.actor === me.name);
  return Object.entries(state.workflow.actions)
    .filter(([, t]) => t.from.includes(c.status) && t.roles.includes(me.role))
    .map(([a]) => a)
    .filter((a) => !(handledByMe && state.workflow.supervision_actions.includes(a)))
    .filter((a) => a !== "rate" || !c.satisfaction)
    .filter((a) => a !== "respond" || summons.some((s) => !s.responded_at
      && (me.role !== "handler" || s.department === me.department)));
}

function renderActions(c, events, summons) {
  const box = $("#actions");
  box.replaceChildren();
  $("#action-form").hidden = true;
  message("#action-message", "");
  const actions = allowedActions(c, events, summons);
  for (const a of actions) {
    const b = el("button", LABEL[a] || a, { type: "button", "data-action": a, class: "small" });
    b.addEventListener("click", () => (NEEDS[a] ? showActionForm(c, a) : act(c, a, {})));
    box.append(b);
  }
  if (!actions.length) {
    box.append(el("p", c.in_scope ? `Nothing for a ${state.me.role} to do while it is ${c.status.replace("_", " ")}.`
      : "This case is outside your scope.", { class: "muted" }));
  }
}

function showActionForm(c, action) {
  const formEl = $("#action-form");
  formEl.replaceChildren();
  formEl.noValidate = true; // our own message names what is missing
  formEl.hidden = false;
  for (const spec of NEEDS[action]) {
    const required = spec.endsWith("!");
    const name = spec.replace("!", "");
    const label = el("label", undefined, { class: "field" });
    label.append(el("span", `${name.replace("_", " ")}${required ? "" : " (optional)"}`));
    let input;
    if (name === "note") {
      input = el("textarea", undefined, { name, maxlength: "10000", rows: "3" });
    } else if (name === "department") {
      input = el("select", undefined, { name });
      input.append(el("option", required ? "choose…" : "(keep the current one)", { value: "" }));
      for (const d of state.departments) input.append(el("option", d, { value: d }));
    } else if (name === "result") {
      input = el("select", undefined, { name });
      input.append(el("option", "pass: fixed", { value: "pass" }), el("option", "fail: not fixed", { value: "fail" }));
    } else if (name === "satisfaction") {
      input = el("select", undefined, { name });
      for (let i = 5; i >= 1; i--) input.append(el("option", String(i), { value: String(i) }));
    } else {
      input = el("input", undefined, { name, type: "text", inputmode: "numeric" });
    }
    if (required) input.required = true;
    label.append(input);
    formEl.append(label);
  }
  const row2 = el("div", undefined, { class: "actions-row" });
  const go = el("button", `Confirm: ${LABEL[action] || action}`, { type: "submit", class: "primary small" });
  const cancel = el("button", "Cancel", { type: "button", class: "small" });
  cancel.addEventListener("click", () => { formEl.hidden = true; });
  row2.append(go, cancel);
  formEl.append(row2);
  formEl.onsubmit = (e) => {
    e.preventDefault();
    const data = {};
    for (const input of formEl.querySelectorAll("[name]")) {
      const v = input.value.trim();
      if (!v) continue;
      data[input.name] = ["responder_id", "satisfaction"].includes(input.name) ? Number(v) : v;
    }
    const missing = NEEDS[action].filter((s) => s.endsWith("!")).map((s) => s.slice(0, -1))
      .filter((n) => data[n] === undefined);
    if (missing.length) {
      message("#action-message", `${LABEL[action] || action} needs: ${missing.join(", ")}`);
      return;
    }
    act(c, action, data);
  };
  formEl.querySelector("[name]")?.focus();
}

async function act(c, action, data) {
  message("#action-message", "Sending…", "info");
  try {
    const result = await api(`/api/cases/${c.id}/actions`, { method: "POST", json: { action, ...data } });
    await openCase(c.id);
    const e = result.event;
    message("#action-message", `Done: ${action}${e.to_state !== e.from_state ? ` → ${e.to_state}` : ""}.`, "ok");
    const tr = document.querySelector(`#cases tbody tr[data-id="${c.id}"]`);
    if (tr) tr.replaceWith(row(state.current));
  } catch (err) {
    message("#action-message", `${LABEL[action] || action} refused: ${err.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Start
async function start() {
  await loadOptions();
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("#token").value.trim();
    if (!token) { message("#login-message", "Paste your token first."); return; }
    $("#token").value = "";
    if (await signIn(token)) { state.cursors = [null]; await loadPage(null); }
  });
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(STORAGE_KEY);
    state.token = null;
    state.me = null;
    showSignedOut();
  });
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!state.me) return;
    state.cursors = [null];
    loadPage(null);
  });
  $("#filters").addEventListener("reset", () => setTimeout(() => {
    if (!state.me) return;
    state.cursors = [null];
    loadPage(null);
  }));
  $("#next").addEventListener("click", () => {
    state.cursors.push(state.next);
    loadPage(state.next);
  });
  $("#prev").addEventListener("click", () => {
    state.cursors.pop();
    loadPage(state.cursors[state.cursors.length - 1]);
  });
  if (state.token && await signIn(state.token)) await loadPage(null);
  else showSignedOut();
}

window.gridgov = { ready: start(), openCase, state };
