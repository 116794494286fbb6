// Menus: MenuBar, Menu, MenuAction; and the non-visual Timer and FileDialog.
import { Callback, Container, Widget, h, readFiles } from "./base.js";

export class MenuAction extends Widget {
  constructor(options = {}) {
    super("button", "rw-menuitem");
    this.el.type = "button";
    this.el.setAttribute("role", "menuitem");
    this.checkable = !!options.checkable;
    this.checked = false;
    this.el.textContent = options.text ?? "";
    this.el.addEventListener("click", () => {
      if (this.checkable) this.set_checked(!this.checked);
      closeMenus();
      this.make_callback("activated", this.checkable ? this.checked : undefined);
    });
  }
  set_text(t) { this.el.textContent = t ?? ""; }
  get_text() { return this.el.textContent; }
  set_checked(tf) { this.checked = !!tf; this.el.classList.toggle("rw-checked", this.checked); this.el.setAttribute("aria-checked", String(this.checked)); }
  get_checked() { return this.checked; }
  set_state(tf) { this.set_checked(tf); }
  get_state() { return this.checked; }
}

function closeMenus() { for (const m of document.querySelectorAll(".rw-menu.rw-open")) m.classList.remove("rw-open"); }
document.addEventListener("click", (e) => { if (!e.target.closest(".rw-menubar, .rw-menu")) closeMenus(); });

export class Menu extends Container {
  constructor() {
    super("div", "rw-menu");
    this.el.setAttribute("role", "menu");
    this.named = new Map();
  }
  add_widget(child) { this.el.appendChild(this._adopt(child)); }
  add_name(name, checkable = false) {
    const action = new MenuAction({ text: name, checkable });
    this.add_widget(action);
    this.named.set(name, action);
    return action;
  }
  add_separator() { this.el.appendChild(h("hr", "rw-menu-sep")); }
  add_menu(name, menu) {
    menu = menu || new Menu();
    this.named.set(name, menu);
    const item = h("div", "rw-submenu", name);
    item.appendChild(this._adopt(menu));
    item.addEventListener("mouseenter", () => menu.el.classList.add("rw-open"));
    item.addEventListener("mouseleave", () => menu.el.classList.remove("rw-open"));
    this.el.appendChild(item);
    return menu;
  }
  get_menu(name) { return this.named.get(name) || null; }
  popup(x, y) {
    document.body.appendChild(this.el);
    this.el.classList.add("rw-open", "rw-popup");
    this.el.style.left = `${x ?? 0}px`;
    this.el.style.top = `${y ?? 0}px`;
  }
}

export class MenuBar extends Container {
  constructor() {
    super("nav", "rw-menubar");
    this.el.setAttribute("role", "menubar");
    this.named = new Map();
  }
  add_menu(menu, name) {
    const slot = h("div", "rw-menubar-item");
    const title = h("button", "rw-menubar-title", name);
    title.type = "button";
    title.addEventListener("click", () => { const open = menu.el.classList.contains("rw-open"); closeMenus(); menu.el.classList.toggle("rw-open", !open); });
    slot.append(title, this._adopt(menu));
    this.el.appendChild(slot);
    this.named.set(name, menu);
    return menu;
  }
  add_name(name) { return this.add_menu(new Menu(), name); }
  get_menu(name) { return this.named.get(name) || null; }
}

export class Timer extends Callback {
  constructor(options = {}) {
    super();
    this.duration = options.duration ?? 1.0;
    this.handle = null;
    this.deadline = 0;
  }
  start(duration) {
    this.stop();
    const d = duration ?? this.duration;
    this.deadline = performance.now() + d * 1000;
    this.handle = setTimeout(() => { this.handle = null; this.make_callback("expired"); }, d * 1000);
  }
  set(duration) { this.start(duration); }
  cond_set(duration) { if (!this.is_set()) this.start(duration); }
  stop() { if (this.handle) clearTimeout(this.handle); this.handle = null; }
  cancel() { if (this.handle) { this.stop(); this.make_callback("cancelled"); } }
  is_set() { return this.handle !== null; }
  time_left() { return this.handle ? Math.max(0, (this.deadline - performance.now()) / 1000) : 0; }
  set_duration(d) { this.duration = d; }
  get_duration() { return this.duration; }
  destroy() { this.stop(); super.destroy(); }
}

export class FileDialog extends Callback {
  constructor(options = {}) {
    super();
    this.input = h("input", "rw-filedialog");
    this.input.type = "file";
    this.input.hidden = true;
    this.input.dataset.wid = String(this.wid);
    this.set_mode(options.mode || "file");
    if (options.accept) this.input.accept = options.accept;
    if (options.multiple) this.input.multiple = true;
    this.input.addEventListener("change", async () => {
      const files = await readFiles(this.input.files);
      this.input.value = "";
      if (files.length) this.make_callback("activated", { files });
    });
    document.body.appendChild(this.input);
  }
  set wid(v) { this._wid = v; if (this.input) this.input.dataset.wid = String(v); }
  get wid() { return this._wid; }
  open() { this.input.click(); }
  show() { this.open(); }
  popup() { this.open(); }
  set_mode(mode) { this.mode = mode; this.input.multiple = mode === "files"; }
  get_mode() { return this.mode; }
  set_accept(accept) { this.input.accept = accept || ""; }
  get_accept() { return this.input.accept; }
  save(filename, data, mimeType = "application/octet-stream") {
    const a = h("a");
    a.href = URL.createObjectURL(new Blob([data], { type: mimeType }));
    a.download = filename;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }
  destroy() { this.input.remove(); super.destroy(); }
}
