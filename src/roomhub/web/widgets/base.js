// Widget base classes: the registry of widget ids, callbacks, common methods.
// Every widget keeps its root element in `el`; containers keep `children`.

export const registry = new Map();
export const AUTO_WID_BASE = 1_000_000_000;  // ids of widgets the browser makes itself
let autoWid = AUTO_WID_BASE;

export function resetRegistry() {
  for (const w of [...registry.values()]) {
    try { w.destroy(); } catch (e) { console.warn("widgets: destroy failed", e); }
  }
  registry.clear();
  autoWid = AUTO_WID_BASE;
}

export function h(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined && text !== null) el.textContent = String(text);
  return el;
}

const px = (v) => (typeof v === "number" ? `${v}px` : v);

/** Non-visual object with callbacks (Timer, FileDialog...). */
export class Callback {
  constructor() {
    this.wid = ++autoWid;
    registry.set(this.wid, this);
    this.cb = new Map();
  }
  add_callback(action, fn) {
    if (!this.cb.has(action)) this.cb.set(action, []);
    this.cb.get(action).push(fn);
  }
  remove_callback(action, fn) {
    const list = this.cb.get(action) || [];
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }
  enable_callback(action) { this.onListen(action); }
  onListen(_action) {}
  has_callback(action) { return (this.cb.get(action) || []).length > 0; }
  make_callback(action, ...args) {
    for (const fn of [...(this.cb.get(action) || [])]) {
      try { fn(this, ...args); } catch (e) { console.error("widgets: callback failed", e); }
    }
  }
  destroy() { registry.delete(this.wid); }
}

/** A visible widget: common methods of every class. */
export class Widget extends Callback {
  constructor(tag = "div", className = "") {
    super();
    this.el = h(tag, `rw-widget ${className}`.trim());
    this.el.dataset.wid = String(this._wid);
    this._enabled = true;
  }
  set wid(v) { this._wid = v; if (this.el) this.el.dataset.wid = String(v); }
  get wid() { return this._wid; }

  show() { this.el.hidden = false; }
  hide() { this.el.hidden = true; }
  is_visible() { return !this.el.hidden && this.el.isConnected; }
  set_enabled(tf) {
    this._enabled = !!tf;
    this.el.classList.toggle("rw-disabled", !tf);
    for (const c of this.el.querySelectorAll("input,button,select,textarea")) c.disabled = !tf;
    if ("disabled" in this.el) this.el.disabled = !tf;
  }
  get_enabled() { return this._enabled; }
  set_tooltip(msg) { this.el.title = msg || ""; }
  get_tooltip() { return this.el.title; }
  resize(width, height) {
    if (width != null) this.el.style.width = px(width);
    if (height != null) this.el.style.height = px(height);
  }
  get_size() {
    const r = this.el.getBoundingClientRect();
    return [Math.round(r.width), Math.round(r.height)];
  }
  get_position() {
    const r = this.el.getBoundingClientRect();
    return [Math.round(r.left), Math.round(r.top)];
  }
  set_min_size(w, h2) { if (w != null) this.el.style.minWidth = px(w); if (h2 != null) this.el.style.minHeight = px(h2); }
  set_max_size(w, h2) { if (w != null) this.el.style.maxWidth = px(w); if (h2 != null) this.el.style.maxHeight = px(h2); }
  set_expanding(horizontal, vertical) {
    this.el.classList.toggle("rw-hexpand", !!horizontal);
    this.el.classList.toggle("rw-vexpand", !!vertical);
  }
  set_padding(padding) { this.el.style.padding = Array.isArray(padding) ? padding.map(px).join(" ") : px(padding); }
  set_bg(color) { this.el.style.background = color || ""; }
  set_fg(color) { this.el.style.color = color || ""; }
  set_border_width(width) { this.el.style.borderWidth = px(width); this.el.style.borderStyle = "solid"; }
  set_border_color(color) { this.el.style.borderColor = color; }
  set_font(font, size, weight, style) {
    if (font && typeof font === "object") ({ family: font, size, weight, style } = { family: font.family, ...font });
    if (font) this.el.style.fontFamily = font;
    if (size != null) this.el.style.fontSize = px(size);
    if (weight != null) this.el.style.fontWeight = weight;
    if (style != null) this.el.style.fontStyle = style;
  }
  set_focus() { (this.el.querySelector("input,textarea,select,button") || this.el).focus(); }
  set_cursor(name) { this.el.style.cursor = name || ""; }
  set_allow_text_selection(tf) { this.el.style.userSelect = tf ? "text" : "none"; }
  is_container() { return false; }
  destroy() {
    super.destroy();
    this.el.remove();
  }

  onListen(action) {
    if (action === "drop-end") this._enableDrop();
    if (action === "click" && !this._clickHooked) {
      this._clickHooked = true;
      this.el.addEventListener("click", () => this.make_callback("click"));
    }
  }

  _enableDrop() {
    if (this._dropHooked) return;
    this._dropHooked = true;
    this.el.addEventListener("dragover", (e) => { e.preventDefault(); this.el.classList.add("rw-dragover"); });
    this.el.addEventListener("dragleave", () => this.el.classList.remove("rw-dragover"));
    this.el.addEventListener("drop", async (e) => {
      e.preventDefault();
      this.el.classList.remove("rw-dragover");
      const files = await readFiles(e.dataTransfer.files);
      if (files.length) this.make_callback("drop-end", { files });
    });
  }
}

/** Read a FileList into [{name, size, type, data: ArrayBuffer}]. */
export async function readFiles(list) {
  const out = [];
  for (const f of list) out.push({ name: f.name, size: f.size, type: f.type, data: await f.arrayBuffer() });
  return out;
}

/** A widget holding children. */
export class Container extends Widget {
  constructor(tag, className) {
    super(tag, className);
    this.children = [];
  }
  is_container() { return true; }
  get body() { return this.el; }
  _adopt(child, wrapper = child.el) {
    if (child.parent && child.parent !== this) child.parent._release(child);
    child.parent = this;
    if (!this.children.includes(child)) this.children.push(child);
    this.make_callback("child-added", child);
    return wrapper;
  }
  _release(child) {
    const i = this.children.indexOf(child);
    if (i >= 0) this.children.splice(i, 1);
    (child._wrapper || child.el).remove();
    child._wrapper = null;
    child.parent = null;
    this.make_callback("child-removed", child);
  }
  set_widget(child) {
    for (const c of [...this.children]) this._release(c);
    this.body.appendChild(this._adopt(child));
  }
  get_children() { return [...this.children]; }
  num_children() { return this.children.length; }
  remove(child, destroy = false) {
    if (!this.children.includes(child)) return;
    this._release(child);
    if (destroy) child.destroy();
  }
  remove_widget(child, destroy = false) { this.remove(child, destroy); }
  remove_all(destroy = false) { for (const c of [...this.children]) this.remove(c, destroy); }
  destroy() {
    for (const c of [...this.children]) c.destroy();
    super.destroy();
  }
}
