// Controls: Label, Button, CheckBox, RadioButton, ToggleButton, TextEntry,
// TextArea, ComboBox, SpinBox, Slider, ProgressBar, Image, HtmlView.
import { Widget, h, registry } from "./base.js";

export class Label extends Widget {
  constructor(text = "", options = {}) {
    super("div", "rw-label");
    this.set_text(text);
    if (options.halign) this.set_halign(options.halign);
  }
  set_text(text) { this.el.textContent = text ?? ""; }
  get_text() { return this.el.textContent; }
  set_color(bg, fg) { if (bg) this.el.style.background = bg; if (fg) this.el.style.color = fg; }
  set_halign(align) { this.el.style.textAlign = align; }
  set_valign(align) { this.el.style.alignSelf = { top: "flex-start", bottom: "flex-end", center: "center" }[align] || align; }
}

export class Button extends Widget {
  constructor(text = "") {
    super("button", "rw-button");
    this.el.type = "button";
    this.set_text(text);
    this.el.addEventListener("click", () => this.make_callback("activated"));
  }
  set_text(text) { this.el.textContent = text ?? ""; }
  get_text() { return this.el.textContent; }
  set_color(bg, fg) { if (bg) this.el.style.background = bg; if (fg) this.el.style.color = fg; }
  set_icon(url, size) {
    const img = h("img", "rw-icon");
    img.src = url; img.alt = "";
    if (size) img.style.width = img.style.height = `${Array.isArray(size) ? size[0] : size}px`;
    this.el.prepend(img);
  }
}

class Check extends Widget {
  constructor(text, type, className, group) {
    super("label", className);
    this.input = h("input");
    this.input.type = type;
    if (group) this.input.name = group;
    this.text = h("span", "", text);
    this.el.append(this.input, this.text);
    this.input.addEventListener("change", () => this.make_callback("activated", this.input.checked));
  }
  set_text(text) { this.text.textContent = text ?? ""; }
  get_text() { return this.text.textContent; }
  set_state(tf) { this.input.checked = !!tf; }
  get_state() { return this.input.checked; }
}

export class CheckBox extends Check {
  constructor(text = "") { super(text, "checkbox", "rw-check"); }
}

let radioGroups = 0;
export class RadioButton extends Check {
  constructor(text = "", options = {}) {
    let group = options.group;
    if (group && typeof group === "object") group = group.input.name;
    super(text, "radio", "rw-check rw-radio", group || `rw-radio-${++radioGroups}`);
  }
}

export class ToggleButton extends Widget {
  constructor(text = "") {
    super("button", "rw-button rw-toggle");
    this.el.type = "button";
    this.el.textContent = text;
    this.state = false;
    this.el.setAttribute("aria-pressed", "false");
    this.el.addEventListener("click", () => { this.set_state(!this.state); this.make_callback("activated", this.state); });
  }
  set_text(text) { this.el.textContent = text ?? ""; }
  get_text() { return this.el.textContent; }
  set_state(tf) { this.state = !!tf; this.el.setAttribute("aria-pressed", String(this.state)); this.el.classList.toggle("rw-on", this.state); }
  get_state() { return this.state; }
}

function debounceModified(widget, input) {
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => widget.make_callback("modified", input.value), 250);
  });
}

export class TextEntry extends Widget {
  constructor(text = "", options = {}) {
    super("input", "rw-entry");
    this.el.type = options.password ? "password" : "text";
    this.el.value = text ?? "";
    if (options.placeholder) this.el.placeholder = options.placeholder;
    if (options.editable === false) this.el.readOnly = true;
    this.el.addEventListener("keydown", (e) => { if (e.key === "Enter") this.make_callback("activated", this.el.value); });
  }
  onListen(action) { super.onListen(action); if (action === "modified" && !this._mod) { this._mod = true; debounceModified(this, this.el); } }
  set_text(text) { this.el.value = text ?? ""; }
  get_text() { return this.el.value; }
  clear() { this.el.value = ""; }
  set_length(n) { this.el.size = n; }
  set_editable(tf) { this.el.readOnly = !tf; }
  set_placeholder(text) { this.el.placeholder = text ?? ""; }
}

export class TextArea extends Widget {
  constructor(text = "", options = {}) {
    super("textarea", "rw-textarea");
    this.el.value = text ?? "";
    if (options.editable === false) this.el.readOnly = true;
    if (options.wrap === false) this.el.wrap = "off";
  }
  onListen(action) { super.onListen(action); if (action === "modified" && !this._mod) { this._mod = true; debounceModified(this, this.el); } }
  set_text(text) { this.el.value = text ?? ""; }
  get_text() { return this.el.value; }
  append_text(text) { this.el.value += text; }
  clear() { this.el.value = ""; }
  set_editable(tf) { this.el.readOnly = !tf; }
  set_wrap(tf) { this.el.wrap = tf ? "soft" : "off"; }
  scroll_to_end() { this.el.scrollTop = this.el.scrollHeight; }
}

export class ComboBox extends Widget {
  constructor(options = {}) {
    super("select", "rw-combo");
    this.el.addEventListener("change", () => this.make_callback("activated", this.el.selectedIndex, this.get_text()));
    this._editable = !!options.editable;
  }
  append_text(text) { this.el.appendChild(new Option(text, text)); }
  insert_alpha(text) {
    const after = [...this.el.options].find((o) => o.text.localeCompare(text) > 0);
    this.el.insertBefore(new Option(text, text), after || null);
  }
  delete_alpha(text) { [...this.el.options].find((o) => o.text === text)?.remove(); }
  set_text(text) { const i = [...this.el.options].findIndex((o) => o.text === text); if (i >= 0) this.el.selectedIndex = i; }
  show_text(text) { this.set_text(text); }
  get_text() { return this.el.selectedIndex >= 0 ? this.el.options[this.el.selectedIndex].text : ""; }
  set_index(i) { this.el.selectedIndex = i; }
  get_index() { return this.el.selectedIndex; }
  get_alpha(i) { return this.el.options[i]?.text ?? null; }
  clear() { this.el.innerHTML = ""; }
}

function fixed(value, decimals) { return decimals == null ? value : Number(Number(value).toFixed(decimals)); }

export class SpinBox extends Widget {
  constructor(options = {}) {
    super("input", "rw-spin");
    this.el.type = "number";
    this.decimals = options.decimals ?? (options.dtype === "float" ? 2 : 0);
    this.set_limits(options.min ?? 0, options.max ?? 100, options.step ?? 1);
    this.set_value(options.value ?? options.min ?? 0);
    this.el.addEventListener("change", () => this.make_callback("activated", this.get_value()));
  }
  set_value(v) { this.el.value = String(v); }
  get_value() { return fixed(Number(this.el.value), this.decimals); }
  set_limits(min, max, step) { this.el.min = String(min); this.el.max = String(max); if (step != null) this.el.step = String(step); }
  set_decimals(n) { this.decimals = n; }
}

export class Slider extends Widget {
  constructor(options = {}) {
    super("div", `rw-slider ${options.orientation === "vertical" ? "rw-vertical" : ""}`);
    this.input = h("input");
    this.input.type = "range";
    this.valueEl = h("output", "rw-slider-value");
    this.el.append(this.input, this.valueEl);
    this.valueEl.hidden = options.show_value === false;
    this.decimals = options.decimals ?? null;
    this.track = !!options.track;
    this.set_limits(options.min ?? 0, options.max ?? 100, options.step ?? 1);
    this.set_value(options.value ?? options.min ?? 0);
    this.input.addEventListener("input", () => { this._show(); if (this.track) this.make_callback("activated", this.get_value()); });
    this.input.addEventListener("change", () => { if (!this.track) this.make_callback("activated", this.get_value()); });
  }
  _show() { this.valueEl.textContent = String(this.get_value()); }
  set_value(v) { this.input.value = String(v); this._show(); }
  get_value() { return fixed(Number(this.input.value), this.decimals); }
  set_limits(min, max, step) { this.input.min = String(min); this.input.max = String(max); if (step != null) this.input.step = String(step); this._show(); }
  set_tracking(tf) { this.track = !!tf; }
  set_decimals(n) { this.decimals = n; }
}

export class ProgressBar extends Widget {
  constructor() {
    super("div", "rw-progress");
    this.el.setAttribute("role", "progressbar");
    this.bar = h("div", "rw-progress-fill");
    this.label = h("span", "rw-progress-label");
    this.el.append(this.bar, this.label);
    this.set_value(0);
  }
  set_value(v) {
    this.value = Math.max(0, Math.min(1, Number(v) || 0));
    const pct = Math.round(this.value * 100);
    this.bar.style.width = `${this.value * 100}%`;
    this.label.textContent = `${pct}%`;
    this.el.setAttribute("aria-valuenow", String(pct));
  }
  get_value() { return this.value; }
}

export class Image extends Widget {
  constructor(options = {}) {
    super("div", "rw-image");
    this.img = h("img");
    this.img.alt = "";
    this.el.appendChild(this.img);
    if (options.url) this.set_image(options.url);
  }
  set_image(url) { this.img.src = url; }
  set_binary_image(data, format = "png") {
    if (this._url) URL.revokeObjectURL(this._url);
    this._url = URL.createObjectURL(new Blob([data], { type: `image/${format}` }));
    this.img.src = this._url;
  }
}

export class HtmlView extends Widget {
  constructor(html = "") {
    super("div", "rw-html");
    this.set_html(html);
  }
  set_html(html) { this.el.innerHTML = html ?? ""; }
  get_html() { return this.el.innerHTML; }
  append_html(html) { this.el.insertAdjacentHTML("beforeend", html); }
  clear() { this.el.innerHTML = ""; }
  scroll_to_top() { this.el.scrollTop = 0; }
  scroll_to_bottom() { this.el.scrollTop = this.el.scrollHeight; }
}

export { registry };
