// The base of every roomhub custom element: it subscribes to the frames of
// its executor on the page's room connection, follows the connection's state,
// shows notices (errors from the server are shown, never swallowed), and
// loads browser libraries through the import map with a clear hint when
// they are missing.

import { pageRoom } from "./connection.js";

/** Create an element: h("div", {class: "x", onclick: f}, child, "text"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...children);
  return el;
}

/** Why a browser library could not be loaded; `message` says what to do. */
export class VendorMissing extends Error {}

/**
 * Import browser libraries (bare specifiers resolved by /static/importmap.js).
 * Rejects with VendorMissing carrying a "run make setup" hint when they are not installed.
 */
export async function loadVendor(...specifiers) {
  const vendor = globalThis.roomhubVendor;
  if (!vendor) {
    throw new VendorMissing(
      'the import map is missing: the page must load <script src="/static/importmap.js"></script> '
      + "in its head, before any module script");
  }
  if (!vendor.ok) throw new VendorMissing(vendor.hint);
  try {
    return await Promise.all(specifiers.map((name) => import(name)));
  } catch (error) {
    throw new VendorMissing(`cannot load ${specifiers.join(", ")} (${error.message}); run \`make setup\``);
  }
}

/** A stylesheet of the vendor folder, added to the document once. */
export function vendorStylesheet(path) {
  const href = new URL(`vendor/${path}`, import.meta.url).href;
  if (![...document.querySelectorAll("link[rel=stylesheet]")].some((l) => l.href === href)) {
    document.head.append(h("link", { rel: "stylesheet", href }));
  }
}

export class RoomElement extends HTMLElement {
  static observedAttributes = ["executor"];

  constructor() {
    super();
    this.subscriptions = [];
    this.built = false;
  }

  /** The executor this element shows (its `executor` attribute). */
  get executor() {
    return this.getAttribute("executor");
  }

  connectedCallback() {
    if (!this.built) {
      this.built = true;
      this.classList.add("rh-widget");
      this.noticeBox = h("div", { class: "rh-notices", role: "status", "aria-live": "polite" });
      this.build();
      this.append(this.noticeBox);
    }
    this.attach();
  }

  disconnectedCallback() {
    this.detach();
  }

  attributeChangedCallback(name, before, after) {
    if (name === "executor" && before !== after && this.isConnected && this.built) {
      this.detach();
      this.attach();
    }
  }

  attach() {
    this.room = pageRoom();
    if (!this.executor) {
      this.notice("error", `<${this.localName}> needs an executor attribute`);
      return;
    }
    const listen = (type, fn) => {
      this.room.addEventListener(type, fn);
      return () => this.room.removeEventListener(type, fn);
    };
    this.subscriptions = [
      listen("state", (event) => this.onConnection(event.detail.state)),
      listen("joined", (event) => this.onJoined(event.detail)),
      this.room.subscribe(this.executor, (message) => this.receive(message)),
    ];
    this.onConnection(this.room.state);
  }

  detach() {
    for (const unsubscribe of this.subscriptions) unsubscribe();
    this.subscriptions = [];
  }

  receive(message) {
    if (message.type === "error") {
      this.onError(message);
      return;
    }
    this.onMessage(message);
  }

  /** Send a message to this element's executor (queued while disconnected). */
  send(message) {
    return this.room.send(this.executor, message);
  }

  /**
   * Show a notice: kind is "info", "warn" or "error"; actions are [label, fn] pairs.
   * A notice with a `key` replaces the previous one with that key. Returns its element.
   */
  notice(kind, text, { actions = [], key = null, timeout = 0 } = {}) {
    if (key) this.clearNotice(key);
    const box = h("div", { class: `rh-notice rh-${kind}`, "data-key": key });
    box.append(h("span", { class: "rh-notice-text" }, text));
    for (const [label, fn] of actions) {
      box.append(h("button", { type: "button", onclick: () => fn(box) }, label));
    }
    box.append(h("button", {
      type: "button", class: "rh-dismiss", title: "Dismiss", "aria-label": "Dismiss",
      onclick: () => box.remove(),
    }, "×"));
    this.noticeBox.append(box);
    if (timeout) setTimeout(() => box.remove(), timeout);
    return box;
  }

  clearNotice(key) {
    for (const el of this.noticeBox.querySelectorAll(`[data-key="${CSS.escape(key)}"]`)) el.remove();
  }

  /** An error frame about this executor (from the server): shown, and logged. */
  onError(message) {
    console.warn(`roomhub: ${this.executor}:`, message);
    this.notice("error", `${message.message || "error"}${message.code ? ` (${message.code})` : ""}`,
      { key: `error-${message.code}` });
  }

  /** A library failed to load: say what to do instead of failing silently. */
  vendorFailed(error) {
    console.error(error);
    this.notice("error", error instanceof VendorMissing ? `Cannot show this widget: ${error.message}` : String(error));
  }

  // Hooks for subclasses.
  build() {}
  onMessage(_message) {}
  onJoined(_joined) {}
  onConnection(_state) {}
}
