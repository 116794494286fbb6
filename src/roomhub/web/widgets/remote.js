// The widgets protocol client (pgwidgets' message shapes): receives create /
// call / batch / listen / unlisten / reconstruct-* and answers with result or
// error; sends callbacks, and uploads files as binary-chunk header + binary
// frame pairs. Session credentials live in the tab's URL and sessionStorage.
import { registry, resetRegistry } from "./base.js";

const CHUNK = 512 * 1024;
const KEY_ID = "roomhub_widgets_session", KEY_TOKEN = "roomhub_widgets_token";

export class Remote {
  constructor(classes, { url, onStatus = () => {} } = {}) {
    this.classes = classes;
    this.url = url;
    this.onStatus = onStatus;
    this.listeners = new Map();
    this.reconstructing = false;
    this.syncing = false;
    this.nextTransfer = 1;
    this.delay = 250;
    this.stopped = false;
    this._loadCredentials();
  }

  connect() {
    this.onStatus(this.everConnected ? "reconnecting" : "connecting");
    const ws = this.ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { this.delay = 250; };
    ws.onmessage = (e) => this._onMessage(e.data);
    ws.onclose = (e) => this._onClose(e);
  }

  _onClose(e) {
    if (this.stopped) return;
    if (e.code >= 4000 && e.code < 5000) {
      this.stopped = true;
      this._saveCredentials(null, null);
      this.onStatus("rejected", e.reason || "The server refused this session.");
      return;
    }
    this.onStatus(e.code === 1013 ? "busy" : "reconnecting", e.reason);
    setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 5000);
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  _onMessage(data) {
    if (typeof data !== "string") return;  // the server sends no unannounced binary frames
    let msg;
    try { msg = JSON.parse(data); } catch { console.error("widgets: bad JSON from server"); return; }
    if (Array.isArray(msg)) {
      this.send(msg.map((m) => this._dispatch(m)).filter((r) => r !== undefined));
      return;
    }
    const result = this._dispatch(msg);
    if (result !== undefined) this.send(result);
  }

  _dispatch(msg) {
    try {
      switch (msg.type) {
        case "init": return this._init(msg);
        case "session-info": return this._sessionInfo(msg);
        case "reconstruct-start": return this._reconstructStart(msg);
        case "reconstruct-end": this.reconstructing = false; this.onStatus("ready"); return { type: "result", id: msg.id };
        case "create": return this._create(msg);
        case "call": return this._call(msg);
        case "batch": return this._batch(msg);
        case "listen": return this._listen(msg);
        case "unlisten": return this._unlisten(msg);
        default: return { type: "error", id: msg.id, error: `Unknown message type: ${msg.type}` };
      }
    } catch (e) {
      return { type: "error", id: msg.id, error: String(e && e.message || e) };
    }
  }

  _clear() {
    resetRegistry();
    this.listeners.clear();
    for (const el of [...document.body.children]) if (!el.classList.contains("rw-status")) el.remove();
  }

  _init(msg) {
    const result = { type: "result", id: msg.id };
    if (this.sessionId && this.token) { result.session_id = this.sessionId; result.token = this.token; }
    this._clear();
    return result;
  }

  _sessionInfo(msg) {
    this._saveCredentials(msg.session_id, msg.token);
    this.everConnected = true;
    this.onStatus("ready");
    this.send({ type: "viewport", width: innerWidth, height: innerHeight });
    return undefined;
  }

  _reconstructStart(msg) {
    this.reconstructing = true;
    this._clear();
    return { type: "result", id: msg.id };
  }

  _widget(wid) {
    const w = registry.get(wid);
    if (!w) throw new Error(`Unknown widget id: ${wid}`);
    return w;
  }

  _resolve(value) {
    if (Array.isArray(value)) return value.map((v) => this._resolve(v));
    if (value && typeof value === "object") {
      if ("__wid__" in value) return this._widget(value.__wid__);
      const out = {};
      for (const k in value) out[k] = this._resolve(value[k]);
      return out;
    }
    return value;
  }

  _serialize(value) {
    if (value && typeof value === "object") {
      if (typeof value.make_callback === "function") return { __wid__: value.wid, __class__: value.constructor.name };
      if (value instanceof ArrayBuffer) return null;
      if (Array.isArray(value)) return value.map((v) => this._serialize(v));
      const out = {};
      for (const k in value) out[k] = this._serialize(value[k]);
      return out;
    }
    return value === undefined ? null : value;
  }

  _create(msg) {
    const Cls = this.classes[msg.class];
    if (!Cls) return { type: "error", id: msg.id, error: `Unknown widget class: ${msg.class}` };
    const widget = new Cls(...this._resolve(msg.args || []));
    registry.delete(widget.wid);
    const old = registry.get(msg.wid);
    if (old && old !== widget) old.destroy();
    widget.wid = msg.wid;
    registry.set(msg.wid, widget);
    return { type: "result", id: msg.id, wid: msg.wid };
  }

  _call(msg) {
    const widget = this._widget(msg.wid);
    if (typeof widget[msg.method] !== "function" || msg.method.startsWith("_") || msg.method === "constructor") {
      return { type: "error", id: msg.id, error: `Unknown method: ${msg.method} on ${widget.constructor.name}` };
    }
    this.syncing = !!msg.silent;
    try {
      const value = widget[msg.method](...this._resolve(msg.args || []));
      const response = { type: "result", id: msg.id };
      if (value !== undefined) response.value = this._serialize(value);
      return response;
    } finally {
      this.syncing = false;
    }
  }

  _batch(msg) {
    const errors = [];
    for (const c of msg.calls || []) {
      try {
        const r = this._call({ id: msg.id, wid: c.wid, method: c.method, args: c.args, silent: c.silent });
        if (r.type === "error") errors.push(r.error);
      } catch (e) { errors.push(String(e && e.message || e)); }
    }
    const response = { type: "result", id: msg.id };
    if (errors.length) response.value = { errors };
    return response;
  }

  _listen(msg) {
    const widget = this._widget(msg.wid);
    const key = `${msg.wid}:${msg.action}`;
    const old = this.listeners.get(key);
    if (old) widget.remove_callback(msg.action, old);
    const cb = (w, ...args) => {
      if (this.syncing || this.reconstructing) return;
      const payload = args[0];
      if (payload && typeof payload === "object" && Array.isArray(payload.files) && payload.files.some((f) => f.data)) {
        this._upload(msg.wid, msg.action, payload);
        return;
      }
      this.send({ type: "callback", wid: msg.wid, action: msg.action, args: args.map((a) => this._serialize(a)) });
    };
    this.listeners.set(key, cb);
    widget.add_callback(msg.action, cb);
    widget.enable_callback(msg.action);
    return { type: "result", id: msg.id };
  }

  _unlisten(msg) {
    const widget = this._widget(msg.wid);
    const key = `${msg.wid}:${msg.action}`;
    const cb = this.listeners.get(key);
    if (cb) { widget.remove_callback(msg.action, cb); this.listeners.delete(key); }
    return { type: "result", id: msg.id };
  }

  /** Send files: the callback with metadata first, then header + binary frame per chunk. */
  async _upload(wid, action, payload) {
    const transferId = this.nextTransfer++;
    const files = payload.files.map((f) => ({ name: f.name, size: f.data ? f.data.byteLength : 0, type: f.type, encoding: "bytes" }));
    this.send({ type: "callback", wid, action, args: [{ ...this._serialize({ ...payload, files: [] }), transfer_id: transferId, files }] });
    for (let fi = 0; fi < payload.files.length; fi++) {
      const buf = payload.files[fi].data || new ArrayBuffer(0);
      const n = Math.max(1, Math.ceil(buf.byteLength / CHUNK));
      for (let ci = 0; ci < n; ci++) {
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
        this.send({ type: "binary-chunk", wid, transfer_id: transferId, file_index: fi, file_count: payload.files.length, chunk_index: ci, num_chunks: n, encoding: "binary" });
        this.ws.send(buf.slice(ci * CHUNK, (ci + 1) * CHUNK));
        while (this.ws.bufferedAmount > 4 * CHUNK) await new Promise((r) => setTimeout(r, 10));
        await new Promise((r) => setTimeout(r, 0));
      }
    }
  }

  _loadCredentials() {
    const params = new URLSearchParams(location.search);
    this.sessionId = params.get("session") || sessionStorage.getItem(KEY_ID);
    this.token = params.get("session_token") || sessionStorage.getItem(KEY_TOKEN);
  }

  _saveCredentials(id, token) {
    this.sessionId = id; this.token = token;
    const url = new URL(location.href);
    if (id) {
      sessionStorage.setItem(KEY_ID, String(id)); sessionStorage.setItem(KEY_TOKEN, token);
      url.searchParams.set("session", String(id)); url.searchParams.set("session_token", token);
    } else {
      sessionStorage.removeItem(KEY_ID); sessionStorage.removeItem(KEY_TOKEN);
      url.searchParams.delete("session"); url.searchParams.delete("session_token");
    }
    history.replaceState(null, "", url);
  }
}
