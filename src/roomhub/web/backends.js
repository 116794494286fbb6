// roomhub's backends client: install HTTP backends on demand and call them through the hub.
//
//   import { hub } from "/static/backends.js";
//   const { demo } = await hub.backends.install(
//     { modules: ["roomhub_demo_backend#^0.1.0 as demo"] },   // or a list of query strings
//     { onEvent: (event) => console.log(event) },             // progress events, build and server logs
//   );
//   const text = await demo.fetchText("/cow-say", { method: "POST", body: ..., headers: ... });
//
// Inputs follow W3Nest's: a list of "name", "name#^1.2.0" or "name#^1.2.0 as alias", or
// { modules, configurations: { name: { build: {...}, dockerfile? } }, partition? }.
// The tab's partition id is kept in sessionStorage, so a reload keeps the same partition and
// its backends (the hub stops them once the tab's socket has been gone for its grace period).

import { ReconnectingSocket } from "./socket.js";

const TAB_KEY = "roomhub.backends.tab";
const PARTITION_HEADER = "x-backends-partition";
// Closes after which the partition socket does not reconnect: the partition was closed on purpose
// (terminated), or the hub refused this tab (policy, token, access).
const NO_RETRY = new Set([1000, 1008, 4001, 4003]);

function randomId(prefix) {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The tab's id: stable across reloads of this tab, new in another tab. */
export function tabId() {
  let id = sessionStorage.getItem(TAB_KEY);
  if (!id) {
    id = randomId("tab-");
    sessionStorage.setItem(TAB_KEY, id);
  }
  return id;
}

/** An install, a start or a request that failed: `status` (HTTP) and the hub's `body`. */
export class BackendError extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.name = "BackendError";
    this.status = status;
    this.body = body;
    this.error = body?.error;
  }
}

/** A client of one installed backend; every request carries the partition header. */
export class BackendClient {
  constructor(hubBase, info) {
    Object.assign(this, info);
    this.urlBase = hubBase + info.urlBase;
    this.docsUrl = `${this.urlBase}/docs?backends-partition=${encodeURIComponent(info.partitionId)}`;
  }

  fetch(endPoint, init = {}) {
    const headers = new Headers(init.headers || {});
    headers.set(PARTITION_HEADER, this.partitionId);
    const path = endPoint.startsWith("/") ? endPoint : `/${endPoint}`;
    return fetch(this.urlBase + path, { ...init, headers });
  }

  async fetchJson(endPoint, init = {}) {
    const response = await this.fetch(endPoint, init);
    const body = await response.json();
    if (!response.ok) throw new BackendError(response.status, body);
    return body;
  }

  async fetchText(endPoint, init = {}) {
    const response = await this.fetch(endPoint, init);
    const text = await response.text();
    if (!response.ok) throw new BackendError(response.status, { detail: text });
    return text;
  }
}

/** The partition sockets of this tab and the install call. */
export class Backends {
  constructor({ base = "", partition, owner } = {}) {
    this.base = base;
    this.owner = owner || tabId();
    this.partition = partition || this.owner;
    this.sockets = new Map();
    this.listeners = new Set();
  }

  /**
   * Open (once) the socket of `partition`; resolves when the hub has greeted it. Rejects with a
   * BackendError when the socket closes before that. Once greeted, the socket reconnects after a
   * drop (with backoff), so the partition outlives a hub restart; it stops on a close that is
   * meant (NO_RETRY), and the next call opens it again.
   */
  connect(partition = this.partition) {
    if (this.sockets.has(partition)) return this.sockets.get(partition).ready;
    const origin = this.base || location.origin;
    const url = new URL("/api/backends/ws", origin.replace(/^http/, "ws"));
    url.searchParams.set("partition", partition);
    url.searchParams.set("owner", this.owner);
    let greeted = false;
    const socket = new ReconnectingSocket(url.href, {
      retry: (close) => greeted && !NO_RETRY.has(close.code),
    });
    const entry = { socket };
    entry.ready = new Promise((resolve, reject) => {
      socket.addEventListener("message", (message) => {
        const event = JSON.parse(message.data);
        if (event.type === "Partition") {
          greeted = true;
          socket.established();
          resolve(event);
        }
        for (const listener of this.listeners) listener(event);
      });
      socket.addEventListener("close", ({ detail }) => {
        if (detail.retrying) return;
        if (this.sockets.get(partition) === entry) this.sockets.delete(partition);
        reject(new BackendError(0, { detail: `partition socket closed (${detail.code} ${detail.reason})` }));
      });
    });
    this.sockets.set(partition, entry);
    socket.connect();
    return entry.ready;
  }

  /** Listen to every event of this tab's partitions; returns the function that stops it. */
  onEvent(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Install backends; resolves to `{ aliasOrName: BackendClient }` once all listen.
   * `onEvent` gets this install's progress events (and server log lines of its backends).
   * Throws a BackendError naming the problem when the hub refuses or a backend fails.
   */
  async install(inputs, { onEvent } = {}) {
    const body = Array.isArray(inputs) ? { modules: inputs } : { ...inputs };
    const partition = body.partition || this.partition;
    body.partition = partition;
    await this.connect(partition);
    const installId = randomId("install-");
    const uids = new Set();
    const stop = this.onEvent((event) => {
      const mine = event.installId === installId || (event.uid && uids.has(event.uid));
      if (event.type === "StartBackendEvent" && event.installId === installId) uids.add(event.uid);
      if (mine && onEvent) onEvent(event);
    });
    try {
      const response = await fetch(`${this.base}/api/backends/install`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-install-id": installId,
          "x-backends-owner": this.owner,
        },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (!response.ok) throw new BackendError(response.status, answer);
      const clients = {};
      for (const info of answer.backends) {
        clients[info.alias || info.name] = new BackendClient(this.base, info);
      }
      return clients;
    } finally {
      setTimeout(stop, 2000); // late log lines of the new backends still reach onEvent for a moment
    }
  }

  /** Stop every backend of `partition` now (DELETE /api/backends/partitions/<id>). */
  async terminate(partition = this.partition) {
    const response = await fetch(`${this.base}/api/backends/partitions/${encodeURIComponent(partition)}`, {
      method: "DELETE",
    });
    return response.json();
  }
}

export const hub = { backends: new Backends() };
