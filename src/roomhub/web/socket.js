// The one WebSocket of roomhub's browser client: pages (connection.js), actions (actions.js) and
// backends (backends.js) each talk to the hub through a ReconnectingSocket.
//
//   const socket = new ReconnectingSocket(() => url, { retry: (close) => close.code !== 1008 });
//   socket.addEventListener("message", (event) => console.log(event.data));
//   socket.connect();
//   socket.send("text");   // sent now when open, else queued and sent in order once open again
//
// After the socket closes it reconnects after a wait that doubles with each failed attempt
// (minDelay, 2·minDelay, ... capped at maxDelay), multiplied by a random factor in
// [1 - jitter, 1 + jitter] so that the tabs a hub restart disconnected do not all come back in
// the same instant. The owner says when a connection counts as established (the hub greeted
// it: `established()`), which starts the next outage's backoff afresh.

export const CONNECTING = "connecting";
export const OPEN = "open";
export const RECONNECTING = "reconnecting";
export const CLOSED = "closed";

/**
 * A WebSocket that reconnects with capped exponential backoff and jitter, and keeps an ordered
 * queue of what is sent while it is not open.
 *
 * Events: "state" (CustomEvent, detail {state, retryIn (ms), close, attempt}), "open" (Event),
 * "message" (MessageEvent, `data` as the WebSocket gave it), "close" (CustomEvent, detail
 * {code, reason, wasClean, retrying, retryIn (ms)}; during it `queued` holds what will be sent
 * after reconnecting, nothing when not retrying), "dropped" (CustomEvent, detail {count}: a
 * message lost because the queue was full).
 */
export class ReconnectingSocket extends EventTarget {
  /**
   * @param {string | (() => string)} url the socket URL, or a function called before every
   *   attempt (a client that resumes a session puts its current session in the query)
   * @param {object} [options]
   * @param {number} [options.minDelay=500] the first wait before reconnecting (ms)
   * @param {number} [options.maxDelay=15000] the cap of the doubling wait (ms), before jitter
   * @param {number} [options.jitter=0.2] each wait is multiplied by a random factor in
   *   [1 - jitter, 1 + jitter]
   * @param {number} [options.maxQueue=10000] messages kept while not open; past it "dropped"
   * @param {(close: {code: number, reason: string, wasClean: boolean}) => boolean} [options.retry]
   *   whether to reconnect after this close (default: always); false stops the socket
   *   (state "closed") until `connect()` is called again
   * @param {boolean} [options.flushOnOpen=true] send the queue as soon as the socket opens;
   *   false: only once the owner calls `established()` (a protocol that greets first)
   * @param {string} [options.binaryType] the WebSocket's binaryType
   * @param {typeof WebSocket} [options.WebSocket] the WebSocket constructor
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.minDelay = options.minDelay ?? 500;
    this.maxDelay = options.maxDelay ?? 15000;
    this.jitter = options.jitter ?? 0.2;
    this.maxQueue = options.maxQueue ?? 10000;
    this.retry = options.retry ?? (() => true);
    this.flushOnOpen = options.flushOnOpen ?? true;
    this.binaryType = options.binaryType;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.state = CLOSED;
    this.ws = null; // the socket of the current attempt (connecting or open), else null
    this.flowing = false; // open, and the queue may be sent
    this.queue = [];
    this.attempt = 0; // failed attempts since the last established connection
    this.retryIn = 0; // the wait before the next attempt (ms)
    this.lastClose = null;
    this.timer = null;
    this.stopped = true;
    // Back online: waiting out the backoff would only delay the reconnect.
    this.onOnline = () => this.state === RECONNECTING && this.reconnectNow();
  }

  /** Open the socket now (skipping any backoff wait) unless it is open or opening. */
  connect() {
    if (this.stopped) {
      this.stopped = false;
      globalThis.addEventListener?.("online", this.onOnline);
    }
    if (this.ws) return;
    clearTimeout(this.timer);
    this.timer = null;
    let ws;
    try {
      ws = new this.WebSocket(typeof this.url === "function" ? this.url() : this.url);
    } catch (error) {
      this.closed({ code: 0, reason: String(error), wasClean: false });
      return;
    }
    if (this.binaryType) ws.binaryType = this.binaryType;
    this.ws = ws;
    this.setState(this.lastClose ? RECONNECTING : CONNECTING);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.setState(OPEN);
      this.dispatchEvent(new Event("open"));
      if (this.flushOnOpen && this.ws === ws) this.flush();
    };
    ws.onmessage = (event) => {
      if (this.ws === ws) this.dispatchEvent(new MessageEvent("message", { data: event.data }));
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.closed({ code: event.code, reason: event.reason, wasClean: event.wasClean });
    };
  }

  /** Close for good: no reconnect, the queue is dropped. `connect()` starts again. */
  close(code = 1000, reason = "closed by the page") {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    globalThis.removeEventListener?.("online", this.onOnline);
    if (this.ws) this.ws.close(code, reason);
    else if (this.state !== CLOSED) this.closed({ code, reason, wasClean: true });
  }

  /** Skip the backoff wait and reconnect now (nothing when open, opening or closed for good). */
  reconnectNow() {
    if (!this.stopped && !this.ws) this.connect();
  }

  /**
   * The peer accepted this connection (e.g. greeted it): the next outage's backoff starts
   * afresh, and the queue is sent.
   */
  established() {
    this.attempt = 0;
    this.retryIn = 0;
    this.flush();
  }

  /**
   * Send `data` (string, Blob, ArrayBuffer...). While the socket is not open (or, with
   * flushOnOpen false, not yet established) it is queued, and sent in order before anything
   * sent later. Returns true if it was handed to the WebSocket now, false if queued or dropped.
   */
  send(data) {
    if (this.flowing && this.ws?.readyState === 1) {
      this.ws.send(data); // flowing: the queue is empty
      return true;
    }
    if (this.queue.length >= this.maxQueue) {
      this.dispatchEvent(new CustomEvent("dropped", { detail: { count: 1 } }));
      return false;
    }
    this.queue.push(data);
    return false;
  }

  /** What is waiting to be sent, oldest first (a copy). */
  get queued() {
    return [...this.queue];
  }

  get isOpen() {
    return this.state === OPEN;
  }

  /** Send the queue now, in order, if the socket is open; what is sent later follows it. */
  flush() {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return;
    this.flowing = true;
    while (this.queue.length) ws.send(this.queue.shift());
  }

  /** The current attempt ended (`close`: {code, reason, wasClean}): wait and retry, or stop. */
  closed(close) {
    this.flowing = false;
    this.lastClose = close;
    const retrying = !this.stopped && this.retry(close);
    if (retrying) {
      const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
      this.retryIn = Math.round(base * (1 - this.jitter + 2 * this.jitter * Math.random()));
      this.attempt += 1;
    } else {
      this.stopped = true;
      globalThis.removeEventListener?.("online", this.onOnline);
      this.queue = [];
      this.retryIn = 0;
    }
    this.dispatchEvent(new CustomEvent("close", { detail: { ...close, retrying, retryIn: this.retryIn } }));
    if (this.ws) return; // a "close" listener connected again
    if (!retrying) {
      this.setState(CLOSED);
      return;
    }
    this.setState(RECONNECTING);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, this.retryIn);
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", {
      detail: { state, retryIn: this.retryIn, close: this.lastClose, attempt: this.attempt },
    }));
  }
}
