// Layout containers and windows: TopLevel, Page, VBox, HBox, GridBox, Splitter,
// TabWidget, Frame, Expander, Dialog.
import { Container, h } from "./base.js";

const px = (v) => (typeof v === "number" ? `${v}px` : v);

export class TopLevel extends Container {
  constructor(options = {}) {
    super("section", "rw-toplevel");
    this.el.hidden = true;
    this.bar = h("header", "rw-titlebar");
    this.titleEl = h("span", "rw-title", options.title || "");
    this.bar.appendChild(this.titleEl);
    if (options.closeable) {
      const x = h("button", "rw-close", "×");
      x.setAttribute("aria-label", "Close");
      x.addEventListener("click", () => { this.hide(); this.make_callback("close"); });
      this.bar.appendChild(x);
    }
    this.content = h("div", "rw-window-body");
    this.el.append(this.bar, this.content);
    document.body.appendChild(this.el);
  }
  get body() { return this.content; }
  set_title(title) { this.titleEl.textContent = title ?? ""; }
  get_title() { return this.titleEl.textContent; }
  set_position(x, y) {
    this.el.classList.add("rw-floating");
    this.el.style.left = px(x);
    this.el.style.top = px(y);
  }
  raise_() { document.body.appendChild(this.el); }
  lower() { document.body.prepend(this.el); }
}

export class Page extends Container {
  constructor() {
    super("main", "rw-page");
    this.el.hidden = true;
    document.body.appendChild(this.el);
  }
}

class Box extends Container {
  constructor(direction) {
    super("div", `rw-box rw-${direction}`);
  }
  _place(child, stretch) {
    const wrap = this._adopt(child);
    child.el.style.flexGrow = stretch ? String(stretch) : "";
    child.el.style.flexShrink = stretch ? "1" : "0";
    child.el.style.flexBasis = stretch ? "0" : "";
    return wrap;
  }
  add_widget(child, stretch = 0) { this.el.appendChild(this._place(child, stretch)); }
  insert_widget(index, child, stretch = 0) {
    const wrap = this._place(child, stretch);
    this.children.splice(this.children.indexOf(child), 1);
    this.children.splice(index, 0, child);
    this.el.insertBefore(wrap, this.el.children[index] || null);
  }
  set_spacing(gap) { this.el.style.gap = px(gap); }
  set_align(align) { this.el.style.alignItems = { left: "flex-start", top: "flex-start", right: "flex-end", bottom: "flex-end" }[align] || align; }
}
export class VBox extends Box { constructor() { super("vbox"); } }
export class HBox extends Box { constructor() { super("hbox"); } }

export class GridBox extends Container {
  constructor(options = {}) {
    super("div", "rw-grid");
    if (options.columns > 1) this.el.style.gridTemplateColumns = `repeat(${options.columns - 1}, auto) minmax(0, 1fr)`;
  }
  add_widget(child, row, col) {
    const el = this._adopt(child);
    el.style.gridRow = String((row || 0) + 1);
    el.style.gridColumn = String((col || 0) + 1);
    this.el.appendChild(el);
  }
  get_widget_at_cell(row, col) {
    return this.children.find((c) => c.el.style.gridRow === String(row + 1) && c.el.style.gridColumn === String(col + 1)) || null;
  }
  set_spacing(v) { this.el.style.gap = px(v); }
  set_row_spacing(v) { this.el.style.rowGap = px(v); }
  set_column_spacing(v) { this.el.style.columnGap = px(v); }
}

export class Splitter extends Container {
  constructor(options = {}) {
    const vertical = options.orientation === "vertical";
    super("div", `rw-splitter ${vertical ? "rw-vsplit" : "rw-hsplit"}`);
    this.vertical = vertical;
  }
  add_widget(child) {
    if (this.children.length) {
      const handle = h("div", "rw-split-handle");
      handle.addEventListener("pointerdown", (e) => this._drag(e, handle));
      this.el.appendChild(handle);
    }
    const pane = h("div", "rw-split-pane");
    pane.appendChild(child.el);
    child._wrapper = pane;
    this._adopt(child, pane);
    this.el.appendChild(pane);
  }
  _panes() { return this.children.map((c) => c._wrapper); }
  set_sizes(sizes) {
    this._panes().forEach((p, i) => { if (sizes[i] != null) p.style.flex = `0 0 ${sizes[i]}px`; });
    const last = this._panes().at(-1);
    if (last) last.style.flex = "1 1 0";
  }
  get_sizes() {
    return this._panes().map((p) => Math.round(this.vertical ? p.getBoundingClientRect().height : p.getBoundingClientRect().width));
  }
  _drag(e, handle) {
    const prev = handle.previousElementSibling;
    const start = this.vertical ? e.clientY : e.clientX;
    const size0 = this.vertical ? prev.getBoundingClientRect().height : prev.getBoundingClientRect().width;
    handle.setPointerCapture(e.pointerId);
    const move = (ev) => {
      const d = (this.vertical ? ev.clientY : ev.clientX) - start;
      prev.style.flex = `0 0 ${Math.max(20, size0 + d)}px`;
    };
    const up = () => {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
      this.make_callback("sizing", this.get_sizes());
    };
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
  }
}

export class TabWidget extends Container {
  constructor(options = {}) {
    super("div", "rw-tabs");
    this.bar = h("div", "rw-tabbar");
    this.bar.setAttribute("role", "tablist");
    this.stack = h("div", "rw-tabstack");
    this.el.append(this.bar, this.stack);
    this.index = -1;
    this.tabs = [];
    this.closable = !!options.closable;
  }
  add_widget(child, options = {}) {
    const title = typeof options === "string" ? options : (options.title ?? `Tab ${this.tabs.length + 1}`);
    const tab = h("button", "rw-tab", title);
    tab.setAttribute("role", "tab");
    tab.addEventListener("click", () => this._select(this.children.indexOf(child), true));
    this.bar.appendChild(tab);
    this.tabs.push(tab);
    const pane = h("div", "rw-tabpane");
    pane.appendChild(child.el);
    child._wrapper = pane;
    child._tab = tab;
    this._adopt(child, pane);
    this.stack.appendChild(pane);
    if (this.index < 0) this._select(0, false); else pane.hidden = true;
  }
  _release(child) {
    const i = this.children.indexOf(child);
    if (child._tab) { child._tab.remove(); this.tabs.splice(this.tabs.indexOf(child._tab), 1); }
    super._release(child);
    if (i === this.index) { this.index = -1; if (this.children.length) this._select(Math.min(i, this.children.length - 1), false); }
  }
  _select(i, fire) {
    if (i < 0 || i >= this.children.length) return;
    this.index = i;
    this.children.forEach((c, j) => { c._wrapper.hidden = j !== i; this.tabs[j].classList.toggle("rw-active", j === i); this.tabs[j].setAttribute("aria-selected", String(j === i)); });
    if (fire) this.make_callback("page-switch", this.children[i], i);
  }
  set_index(i) { this._select(i, false); }
  get_index() { return this.index; }
  show_widget(child) { this._select(this.children.indexOf(child), false); }
  index_of(child) { return this.children.indexOf(child); }
  index_to_widget(i) { return this.children[i] || null; }
  close_widget(child) { this.remove(child); }
}

export class Frame extends Container {
  constructor(options = {}) {
    super("fieldset", "rw-frame");
    this.legend = h("legend", "rw-legend", options.title || "");
    this.legend.hidden = !options.title;
    this.el.appendChild(this.legend);
  }
  set_widget(child) {
    for (const c of [...this.children]) this._release(c);
    this.el.appendChild(this._adopt(child));
  }
  set_title(text) { this.legend.textContent = text ?? ""; this.legend.hidden = !text; }
  set_text(text) { this.set_title(text); }
  get_text() { return this.legend.textContent; }
}

export class Expander extends Container {
  constructor(options = {}) {
    super("div", "rw-expander");
    this.header = h("button", "rw-expander-header", options.title || "");
    this.header.setAttribute("aria-expanded", "true");
    this.content = h("div", "rw-expander-body");
    this.el.append(this.header, this.content);
    this.collapsed = false;
    this.header.addEventListener("click", () => { this.set_collapsed(!this.collapsed); this.make_callback("toggled", this.collapsed); });
  }
  get body() { return this.content; }
  set_collapsed(tf) {
    this.collapsed = !!tf;
    this.content.hidden = this.collapsed;
    this.el.classList.toggle("rw-collapsed", this.collapsed);
    this.header.setAttribute("aria-expanded", String(!this.collapsed));
  }
  get_collapsed() { return this.collapsed; }
  toggleContent() { this.set_collapsed(!this.collapsed); }
}

export class Dialog extends Container {
  constructor(title = "", buttons = [], options = {}) {
    super("div", "rw-dialog-backdrop");
    this.el.hidden = true;
    this.modal = options.modal !== false;
    this.autoclose = options.autoclose !== false;
    this.box = h("div", "rw-dialog");
    this.box.setAttribute("role", "dialog");
    this.titleEl = h("header", "rw-dialog-title", title);
    this.content = h("div", "rw-dialog-body rw-box rw-vbox");
    this.buttons = h("footer", "rw-dialog-buttons");
    this.box.append(this.titleEl, this.content, this.buttons);
    this.el.appendChild(this.box);
    for (const b of buttons || []) {
      const [label, value] = Array.isArray(b) ? b : [b, b];
      this._button(label, value);
    }
    this.el.addEventListener("keydown", (e) => { if (e.key === "Escape") { this.hide(); this.make_callback("close"); } });
    document.body.appendChild(this.el);
  }
  get body() { return this.content; }
  _button(label, value) {
    const b = h("button", "rw-button", label);
    b.addEventListener("click", () => { this.make_callback("activated", value); if (this.autoclose) this.hide(); });
    this.buttons.appendChild(b);
    return b;
  }
  add_widget(child, stretch = 0) { child.el.style.flexGrow = stretch ? String(stretch) : ""; this.content.appendChild(this._adopt(child)); }
  add_button(child, value) {
    if (typeof child === "string") { this._button(child, value); return; }
    child.add_callback("activated", () => { this.make_callback("activated", value); if (this.autoclose) this.hide(); });
    this.buttons.appendChild(this._adopt(child));
  }
  set_title(t) { this.titleEl.textContent = t ?? ""; }
  set_modal(tf) { this.modal = !!tf; this.el.classList.toggle("rw-modeless", !tf); }
  popup() { this.show(); }
  show() { this.el.hidden = false; this.el.classList.toggle("rw-modeless", !this.modal); (this.box.querySelector("button,input") || this.box).focus?.(); }
}
