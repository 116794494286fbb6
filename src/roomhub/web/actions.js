// roomhub actions client: call Python functions of the hub from the browser.
//
//   import { hub } from "/static/actions.js";
//   const call = hub.actions.call("demo.progress", { steps: 5 });
//   for await (const frame of call) console.log(frame);   // each data frame
//   const all = await call.result;                         // every data frame, in order
//   const last = await call.value;                         // the last data frame (the return value)
//   call.cancel();                                         // stops the handler on the hub
//   const off = hub.actions.on("counter", (data, action) => ...);  // process messages
//
// Wire: Igor's message shapes on /actions (see roomhub.actions.protocol). The
// client asks for roomhub's additions (query roomhub=1), keeps the session id
// and token the hub then sends first on connect, reconnects
// with backoff after a drop and resumes its session (query sessionId and
// sessionToken). Calls running when the connection drops fail with
// ActionError code 0 (the hub cancelled them); calls made while offline are
// sent once connected again.

import { ReconnectingSocket } from "./socket.js";

const SESSION_TAKEN = 4009;
const NO_RECONNECT = new Set([1008, 1009]);

/** An error frame, a refused call or a lost connection; `code` is the hub's code (0: connection lost). */
export class ActionError extends Error {
  constructor(message, code = 0, traceback = undefined) {
    super(message);
    this.name = "ActionError";
    this.code = code;
    this.traceback = traceback;
  }
}

/** One call: an async iterable of its data frames, `result`/`value` promises, `cancel()`. */
class Call {
  constructor(client, streamId, action, data) {
    this.client = client;
    this.streamId = streamId;
    this.action = action;
    this.data = data;
    this.frames = [];
    this.done = false;
    this.error = null;
    this.cancelled = false;
    this._waiters = [];
    this._cursorUsed = false;
    this.result = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.result.catch(() => {}); // rejection is reported to whoever awaits it
    this.value = this.result.then((frames) => frames[frames.length - 1]);
    this.value.catch(() => {});
  }

  then(onFulfilled, onRejected) {
    return this.result.then(onFulfilled, onRejected);
  }

  /** Ask the hub to stop this call; it ends with `cancelled` true and no error. */
  cancel() {
    if (this.done) return;
    this.client._send({ streamId: this.streamId, cancel: true });
  }

  [Symbol.asyncIterator]() {
    let index = 0;
    return {
      next: () => {
        if (index < this.frames.length) return Promise.resolve({ value: this.frames[index++], done: false });
        if (this.done) {
          return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => this._waiters.push(() => {
          if (index < this.frames.length) resolve({ value: this.frames[index++], done: false });
          else if (this.error) reject(this.error);
          else resolve({ value: undefined, done: true });
        }));
      },
      return: () => {
        this.cancel();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  _wake() {
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w();
  }

  _frame(msg) {
    if ("data" in msg) {
      this.frames.push(msg.data);
    } else if ("error" in msg) {
      this.error = new ActionError(msg.error, msg.code ?? 0, msg.traceback);
    }
    if (msg.close) {
      this.cancelled = Boolean(msg.cancelled);
      this._finish();
    }
    this._wake();
  }

  _finish(error) {
    if (this.done) return;
    if (error && !this.error) this.error = error;
    this.done = true;
    this.client.calls.delete(this.streamId);
    if (this.error) this._reject(this.error);
    else this._resolve(this.frames);
    this._wake();
  }
}

/** The connection to /actions with session resume. Connects lazily on first use. */
export class ActionsClient {
  constructor(options = {}) {
    const loc = globalThis.location;
    const base = loc ? `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}` : "ws://127.0.0.1:8000";
    this.url = options.url ?? `${base}/actions`;
    this.token = options.token;
    this.reconnect = options.reconnect ?? true;
    this.storageKey = options.storageKey ?? "roomhub.actions.session";
    this.storage = options.storage === undefined ? safeSessionStorage() : options.storage;
    this.calls = new Map();
    this.listeners = new Map();
    this.sessionListeners = new Set();
    this.session = this._loadSession();
    // The hub greets every connection with its session: frames wait for it (flushOnOpen false).
    this.socket = new ReconnectingSocket(() => this._socketURL(), {
      minDelay: options.minDelay ?? 200,
      maxDelay: options.maxDelay ?? 5000,
      jitter: 0.25,
      flushOnOpen: false,
      retry: (close) => this.reconnect && !NO_RECONNECT.has(close.code),
    });
    this.socket.addEventListener("message", (event) => this._message(event.data));
    this.socket.addEventListener("close", (event) => this._closed(event.detail));
    this.ready = null;
    this._ready = null; // resolve and reject of `ready` until the session frame or a close
    this.open = false; // the current socket got its session frame
    this._counter = 0;
    this._prefix = Math.random().toString(36).slice(2, 10);
  }

  /** Call the action `name`; returns a Call (async iterable, thenable, `.result`, `.value`, `.cancel()`). */
  call(name, data = null) {
    const streamId = `${this._prefix}-${++this._counter}`;
    const call = new Call(this, streamId, name, data);
    this.calls.set(streamId, call);
    this._send({ streamId, action: name, data });
    return call;
  }

  /** Listen to the process `processId`: `callback(data, action, frame)`. Returns an unsubscribe function. */
  on(processId, callback) {
    this.connect();
    if (!this.listeners.has(processId)) this.listeners.set(processId, new Set());
    this.listeners.get(processId).add(callback);
    return () => this.listeners.get(processId)?.delete(callback);
  }

  /** `callback(session)` on every (re)connect: `{id, token, resumed, timeout}`. */
  onSession(callback) {
    this.sessionListeners.add(callback);
    return () => this.sessionListeners.delete(callback);
  }

  /** Open the socket if needed; resolves with the session once the hub sent it. */
  connect() {
    if (!this.ready) {
      this.ready = new Promise((resolve, reject) => {
        this._ready = { resolve, reject };
      });
      this.ready.catch(() => {});
    }
    this.socket.connect();
    return this.ready;
  }

  /** Close for good (no reconnect); running calls fail with code 0. */
  close() {
    this.socket.close(1000, "client closed");
  }

  /** The socket URL of the next attempt: roomhub's additions, the session to resume, the token. */
  _socketURL() {
    const params = new URLSearchParams({ roomhub: "1" }); // the session frame, answers to introduce_self
    if (this.session) {
      params.set("sessionId", this.session.id);
      params.set("sessionToken", this.session.token);
    }
    if (this.token) params.set("token", this.token);
    return `${this.url}?${params}`;
  }

  _message(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (!msg.session) {
      this._dispatch(msg);
      return;
    }
    this.session = { id: msg.session.id, token: msg.session.token };
    this._saveSession();
    this.open = true;
    this.socket.established(); // sends the frames queued meanwhile, in order
    for (const cb of this.sessionListeners) cb(msg.session);
    if (!this.ready) this.ready = Promise.resolve(msg.session); // a reconnect nobody asked for
    this._ready?.resolve(msg.session);
    this._ready = null;
  }

  _dispatch(msg) {
    const call = msg.streamId !== undefined ? this.calls.get(msg.streamId) : undefined;
    if (call) {
      call._frame(msg);
      return;
    }
    if (msg.streamId === undefined) {
      console.warn("roomhub actions:", msg.error ?? msg);
      return;
    }
    const listeners = this.listeners.get(msg.streamId);
    if (listeners) {
      for (const cb of listeners) {
        try {
          cb(msg.data, msg.action, msg);
        } catch (err) {
          console.error(err);
        }
      }
    }
  }

  /** Send `msg` now, or once (re)connected, after what was sent before it. */
  _send(msg) {
    this.connect();
    this.socket.send(JSON.stringify(msg));
  }

  /** The socket closed: calls the hub was running fail with code 0; calls still queued wait. */
  _closed(close) {
    this.open = false;
    const lost = new ActionError(`connection lost (${close.code}${close.reason ? ": " + close.reason : ""})`, 0);
    // `queued` is empty when the socket will not reconnect: then every call fails.
    const unsent = new Set(this.socket.queued.map((text) => JSON.parse(text).streamId));
    for (const call of [...this.calls.values()]) {
      if (!unsent.has(call.streamId)) call._finish(lost);
    }
    this._ready?.reject(lost);
    this._ready = null;
    this.ready = null;
    if (close.code === SESSION_TAKEN) {
      this.session = null; // another tab resumed this session: start a fresh one
      this._saveSession();
    }
  }

  _loadSession() {
    try {
      const text = this.storage?.getItem(this.storageKey);
      return text ? JSON.parse(text) : null;
    } catch {
      return null;
    }
  }

  _saveSession() {
    try {
      if (!this.storage) return;
      if (this.session) this.storage.setItem(this.storageKey, JSON.stringify(this.session));
      else this.storage.removeItem(this.storageKey);
    } catch {
      // storage may be disabled; the session then lives as long as the page
    }
  }
}

function safeSessionStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

/** Give `target.actions` an ActionsClient (for a page's own hub object). */
export function attachActions(target, options = {}) {
  target.actions = new ActionsClient(options);
  return target;
}

/** The page's hub: `hub.actions` talks to this page's hub on /actions. */
export const hub = attachActions({});
