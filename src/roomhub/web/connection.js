// The room connection of a page: one WebSocket to `<page>/ws?roomName=R&roomhub=1`
// (interactive-widgets' URL layout; `roomhub=1` asks for roomhub's additions to
// its protocol: state on join, exit codes, errors), a ReconnectingSocket (socket.js: backoff
// with jitter, an ordered queue of messages sent while disconnected), and frames
// dispatched by executor name.
//
// Server frames: {"executor": NAME | null, "message": {"type": ...}}.
// Frames with executor null concern the room: "joined" (sent on every join,
// followed by each executor's state) and "error" (e.g. room refused).

import { ReconnectingSocket } from "./socket.js";

export { CLOSED, CONNECTING, OPEN, RECONNECTING } from "./socket.js";

function randomName() {
  if (globalThis.crypto?.randomUUID) {
    try {
      return crypto.randomUUID();
    } catch {
      // not a secure context: fall through
    }
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The room name of this page from `?roomName=`; when missing, a random one is
 * put into the address bar (without reloading), so sharing the URL shares the room.
 */
export function ensureRoomName(loc = window.location, hist = window.history) {
  const url = new URL(loc.href);
  let name = url.searchParams.get("roomName");
  if (!name) {
    name = randomName();
    url.searchParams.set("roomName", name);
    hist.replaceState(hist.state, "", url);
  }
  return name;
}

/**
 * The room socket URL of a page: ws(s), hash dropped, `/ws` appended, query reduced to roomName
 * (and token), plus `roomhub=1`: this client reads roomhub's additions (joined, state, error...).
 */
export function roomSocketURL(loc, roomName) {
  const page = new URL(loc.href);
  const url = new URL(page.href);
  url.protocol = page.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  url.pathname = page.pathname.replace(/\/+$/, "") + "/ws";
  url.search = "";
  url.searchParams.set("roomName", roomName);
  url.searchParams.set("roomhub", "1");
  const token = page.searchParams.get("token");
  if (token) url.searchParams.set("token", token);
  return url.href;
}

/**
 * A WebSocket to one room that stays connected (a ReconnectingSocket: every close is retried).
 *
 * Events (CustomEvent, `detail` given): "state" ({state, retryIn, close, attempt}), "joined" (the
 * server's joined message), "room-error" (an error frame with executor null, or about an executor
 * no element listens to), "frame" (every frame), "dropped" ({count}: a message lost to queue
 * overflow).
 */
export class RoomConnection extends EventTarget {
  /**
   * @param {string} url the room socket URL
   * @param {object} [options] minDelay/maxDelay (ms) of the backoff, maxQueue (messages),
   *   maxUnclaimed (frames kept per executor nobody listens to yet), WebSocket (constructor)
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.roomName = new URL(url).searchParams.get("roomName");
    this.maxUnclaimed = options.maxUnclaimed ?? 500;
    this.socket = new ReconnectingSocket(url, {
      minDelay: options.minDelay ?? 500,
      maxDelay: options.maxDelay ?? 15000,
      maxQueue: options.maxQueue ?? 10000,
      WebSocket: options.WebSocket,
    });
    this.listeners = new Map(); // executor -> Set of handlers
    this.unclaimed = new Map(); // executor -> frames received before any handler
    this.joined = null;
    this.socket.addEventListener("message", (event) => this.receive(event.data));
    this.socket.addEventListener("close", () => {
      this.joined = null;
    });
    for (const type of ["state", "dropped"]) {
      this.socket.addEventListener(type, (event) => {
        this.dispatchEvent(new CustomEvent(type, { detail: event.detail }));
      });
    }
  }

  get state() {
    return this.socket.state;
  }

  get isOpen() {
    return this.socket.isOpen;
  }

  /** Open the socket (again). Safe to call more than once. */
  connect() {
    this.socket.connect();
  }

  /** Close for good (no reconnect). */
  close(code = 1000, reason = "closed by the page") {
    this.socket.close(code, reason);
  }

  /** Skip the backoff wait and reconnect now. */
  reconnectNow() {
    this.socket.reconnectNow();
  }

  /**
   * Send `message` to `executor`. While disconnected the frame is queued and
   * sent, in order, once the socket opens again. Returns true if sent now.
   */
  send(executor, message) {
    return this.socket.send(JSON.stringify({ executor, message: message === undefined ? null : message }));
  }

  /** Call `handler(message, frame)` for every frame of `executor`; returns an unsubscribe function. */
  subscribe(executor, handler) {
    let set = this.listeners.get(executor);
    if (!set) this.listeners.set(executor, (set = new Set()));
    set.add(handler);
    const early = this.unclaimed.get(executor);
    if (early) {
      this.unclaimed.delete(executor);
      for (const frame of early) handler(frame.message, frame);
    }
    return () => {
      set.delete(handler);
      if (!set.size) this.listeners.delete(executor);
    };
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      console.warn("roomhub: a frame that is not JSON was ignored", data);
      return;
    }
    if (!frame || typeof frame !== "object" || typeof frame.message !== "object" || !frame.message) {
      console.warn("roomhub: a frame without a message object was ignored", frame);
      return;
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    const { executor, message } = frame;
    if (executor === null || executor === undefined) {
      if (message.type === "joined") {
        this.joined = message;
        this.socket.established(); // a real join: the next outage starts the backoff afresh
        this.unclaimed.clear(); // the server is about to send every executor's state again
        this.dispatchEvent(new CustomEvent("joined", { detail: message }));
      } else if (message.type === "error") {
        console.warn("roomhub: room error", message);
        this.dispatchEvent(new CustomEvent("room-error", { detail: message }));
      }
      return;
    }
    const set = this.listeners.get(executor);
    if (set && set.size) {
      for (const handler of [...set]) {
        try {
          handler(message, frame);
        } catch (error) {
          console.error(`roomhub: handler of executor ${executor} failed`, error);
        }
      }
      return;
    }
    if (message.type === "error") {
      // No element shows this executor: the error still reaches the page (rh-status shows it).
      console.warn(`roomhub: error about executor ${executor}`, message);
      this.dispatchEvent(new CustomEvent("room-error", { detail: { ...message, executor } }));
      return;
    }
    let early = this.unclaimed.get(executor);
    if (!early) this.unclaimed.set(executor, (early = []));
    if (early.length < this.maxUnclaimed) early.push(frame);
  }
}

let pageConnection = null;

/** The page's shared room connection, created (and connected) on first use. */
export function pageRoom() {
  if (!pageConnection) {
    const name = ensureRoomName();
    pageConnection = new RoomConnection(roomSocketURL(window.location, name));
    pageConnection.connect();
  }
  return pageConnection;
}
