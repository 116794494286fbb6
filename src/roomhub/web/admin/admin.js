// The admin page: polls GET /api/admin every 2 s and redraws without a reload: totals, four
// charts of the last minutes (connections, messages per second, the mean latency of actions
// calls and proxied requests, event loop lag: plain SVG),
// and per face its rooms with their members (a page room's programs and their state, a
// document room's size, widget sessions), actions sessions and backends partitions; a room's
// "close" button sends POST /api/admin/close.

import { h } from "../element.js";

const POLL_MS = 2000;
const token = new URLSearchParams(window.location.search).get("token");
const headers = token ? { Authorization: `Bearer ${token}` } : {};

async function api(path, init = {}) {
  const response = await fetch(path, { ...init, headers: { ...headers, ...(init.headers || {}) } });
  if (!response.ok) {
    let detail = `${response.status}`;
    try { detail += `: ${(await response.json()).detail}`; } catch { /* not JSON */ }
    throw new Error(detail);
  }
  return response.json();
}

function chart(title, points, unit, scale = 1) {
  const width = 300, height = 90;
  const values = points.map((p) => p * scale);
  const top = Math.max(1e-9, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const coords = values.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / top) * (height - 4) - 2).toFixed(1)}`);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", coords.join(" "));
  svg.append(line);
  const last = values.length ? values[values.length - 1] : 0;
  return h("figure", { "data-chart": title }, svg,
    h("figcaption", {}, `${title}: ${format(last)} ${unit} (max ${format(top)}, last ${values.length} samples)`));
}

function format(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 0);
}

function bytes(n) {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

/**
 * A table whose rows are kept across refreshes, keyed: a row's text cells are updated in place
 * and its other cells (a button) made once, so nothing the admin points at is replaced under
 * the pointer every 2 s. `rows`: [{key, cells}], a cell a string or a function making a node.
 */
function keyedTable(columns) {
  const tbody = h("tbody");
  const table = h("table", {}, h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", {}, c)))), tbody);
  table.update = (rows) => {
    const existing = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
    let previous = null;
    for (const { key, cells } of rows) {
      let tr = existing.get(key);
      if (tr === undefined) {
        tr = h("tr", { "data-key": key },
          ...cells.map((c) => h("td", {}, typeof c === "string" ? c : c())));
      } else {
        existing.delete(key);
        cells.forEach((c, i) => {
          if (typeof c === "string" && tr.children[i].textContent !== c) tr.children[i].textContent = c;
        });
      }
      const next = previous === null ? tbody.firstChild : previous.nextSibling;
      if (next !== tr) tbody.insertBefore(tr, next);
      previous = tr;
    }
    for (const tr of existing.values()) tr.remove();
    table.hidden = rows.length === 0;
  };
  return table;
}

async function closeRoom(namespace, room) {
  if (!window.confirm(`Close room ${room} of ${namespace}? Its clients are disconnected.`)) return;
  try {
    await api("/api/admin/close", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ namespace, room }),
    });
    await refresh();
  } catch (error) {
    status(`closing ${room} failed: ${error.message}`, true);
  }
}

function roomDetail(room) {
  const parts = [];
  if (room.executors) {
    parts.push(Object.entries(room.executors)
      .map(([name, e]) => `${name} (${e.kind}): ${e.running ? "running" : "stopped"}`).join(", "));
  }
  if (room.size !== undefined) parts.push(`document ${bytes(room.size)}, ${room.updates_applied} updates`);
  if (room.browsers !== undefined) parts.push(`${room.browsers} browsers, ${room.widgets} widgets`);
  if (room.owners) parts.push(`owners: ${room.owners.join(", ") || "none"}`);
  return parts.join("; ");
}

const sections = new Map();

/** The face's section, made on its first refresh and updated in place after. */
function faceSection(name) {
  let section = sections.get(name);
  if (section === undefined) {
    section = h("section", { "data-face": name });
    section.heading = h("h2", {}, `${name} `, h("small"));
    section.empty = h("p", { class: "rh-admin-status" }, "no rooms");
    section.rooms = keyedTable(["room", "members", "state", ""]);
    section.sessions = keyedTable(["session", "client", "calls running", "age"]);
    section.partitions = keyedTable(["partition", "clients", "instances"]);
    section.sessionsTitle = h("h3", {}, "sessions");
    section.partitionsTitle = h("h3", {}, "partitions");
    section.append(section.heading, section.empty, section.rooms, section.sessionsTitle, section.sessions,
      section.partitionsTitle, section.partitions);
    sections.set(name, section);
  }
  return section;
}

function updateFace(name, face) {
  const section = faceSection(name);
  section.heading.lastChild.textContent =
    `${face.connections} connections, ${face.room_count} rooms, ${face.members} members, ` +
    `${face.messages_received} messages in / ${face.messages_sent} out, ` +
    `${bytes(face.bytes_received)} in / ${bytes(face.bytes_sent)} out`;
  const rooms = face.rooms || [];
  section.empty.hidden = rooms.length > 0;
  section.rooms.update(rooms.map((room) => ({
    key: `${room.namespace} ${room.name}`,
    cells: [
      () => h("code", {}, `${room.namespace} ${room.name}`),
      room.members.map((m) => m.peer).join(", ") || "none",
      roomDetail(room),
      () => h("button", { class: "rh-button", "data-close": `${room.namespace} ${room.name}`,
        onclick: () => closeRoom(room.namespace, room.name) }, "close"),
    ],
  })));
  const sessions = face.sessions || [];
  section.sessionsTitle.hidden = face.sessions === undefined;
  section.sessions.update(sessions.map((s) => ({
    key: s.id,
    cells: [() => h("code", {}, s.id), s.connected ? s.peer : "disconnected", String(s.calls), `${s.age} s`],
  })));
  const partitions = face.partitions || [];
  section.partitionsTitle.hidden = face.partitions === undefined;
  section.partitions.update(partitions.map((p) => ({
    key: p.partitionId,
    cells: [() => h("code", {}, p.partitionId), String(p.clients),
      p.instances.map((i) => `${i.name} ${i.version} (${i.status})`).join(", ") || "none"],
  })));
  return section;
}

function status(text, failed = false) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.classList.toggle("failed", failed);
}

function render(state) {
  document.getElementById("hub").textContent = `hub ${state.hub.id}, up ${Math.round(state.hub.uptime)} s`;
  const t = state.totals;
  document.getElementById("totals").replaceChildren(
    h("div", { "data-total": "connections" }, h("b", {}, String(t.connections)), "connections"),
    h("div", { "data-total": "rooms" }, h("b", {}, String(t.rooms)), "rooms"),
    h("div", { "data-total": "messages" }, h("b", {}, format(t.messages_per_second)), "messages/s"),
    h("div", { "data-total": "latency" }, h("b", {}, format(t.request_latency_seconds * 1000)),
      "ms request latency"),
    h("div", { "data-total": "lag" }, h("b", {}, format(t.loop_lag_seconds * 1000)), "ms event loop lag"));
  const history = state.history;
  document.getElementById("charts").replaceChildren(
    chart("connections", history.map((p) => p.connections), ""),
    chart("messages per second", history.map((p) => p.messages_per_second), "/s"),
    chart("request latency", history.map((p) => p.request_latency_seconds), "ms", 1000),
    chart("event loop lag", history.map((p) => p.loop_lag_seconds), "ms", 1000));
  const faces = document.getElementById("faces");
  for (const [name, face] of Object.entries(state.faces)) {
    const section = updateFace(name, face);
    if (section.parentNode !== faces) faces.append(section);
  }
}

async function refresh() {
  try {
    render(await api("/api/admin"));
    status(`updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    status(`cannot read /api/admin: ${error.message}`, true);
  }
}

refresh();
setInterval(refresh, POLL_MS);
