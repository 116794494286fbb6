// Data views: TableView (rows of cells) and TreeView (rows with children).
import { Widget, h } from "./base.js";

function columnsOf(spec) {
  return (spec || []).map((c, i) => (typeof c === "string" ? { label: c, key: c } : { label: c.label ?? c.key ?? `#${i}`, key: c.key ?? c.label ?? i, ...c }));
}

class DataView extends Widget {
  constructor(options, className) {
    super("div", `rw-dataview ${className}`);
    this.table = h("table", "rw-table");
    this.thead = h("thead");
    this.tbody = h("tbody");
    this.table.append(this.thead, this.tbody);
    this.el.appendChild(this.table);
    this.el.tabIndex = 0;
    this.selectionMode = options.selection_mode || "single";
    this.sortable = !!options.sortable;
    this.showHeader = options.show_header !== false;
    this.selected = [];
    this.set_columns(options.columns || []);
  }
  set_columns(columns) {
    this.columns = columnsOf(columns);
    this.thead.innerHTML = "";
    if (!this.showHeader) return;
    const tr = h("tr");
    this.columns.forEach((c, i) => {
      const th = h("th", "", c.label);
      if (this.sortable) {
        th.classList.add("rw-sortable");
        th.addEventListener("click", () => this._sortClick(i));
      }
      tr.appendChild(th);
    });
    this.thead.appendChild(tr);
    this._render();
  }
  _sortClick(i) {
    const asc = this._sort?.[0] === i ? !this._sort[1] : true;
    this.sort_by_column(i, asc);
    this.make_callback("sorted", this.columns[i].key, asc);
  }
  _cell(value) { return h("td", typeof value === "number" ? "rw-num" : "", value ?? ""); }
  _select(key, tr, event) {
    const multi = this.selectionMode === "multiple" && (event.ctrlKey || event.metaKey);
    this.selected = multi ? (this.selected.some((k) => JSON.stringify(k) === JSON.stringify(key)) ? this.selected.filter((k) => JSON.stringify(k) !== JSON.stringify(key)) : [...this.selected, key]) : [key];
    this._paintSelection();
    this.make_callback("selected", this.selected);
  }
  _paintSelection() {
    const keys = new Set(this.selected.map((k) => JSON.stringify(k)));
    for (const tr of this.tbody.rows) tr.classList.toggle("rw-selected", keys.has(tr.dataset.key));
  }
  get_selected() { return this.selected; }
  set_selected(items) { this.selected = [...(items || [])]; this._paintSelection(); }
  clear_selection() { this.set_selected([]); }
  get_column_count() { return this.columns.length; }
  scroll_to_end() { this.el.scrollTop = this.el.scrollHeight; }
  set_show_grid(tf) { this.table.classList.toggle("rw-grid-lines", !!tf); }
}

export class TableView extends DataView {
  constructor(options = {}) {
    super(options, "rw-tableview");
    this.rows = [];
  }
  _values(row) { return Array.isArray(row) ? row : this.columns.map((c) => row[c.key]); }
  _render() {
    if (!this.rows) return;
    this.tbody.innerHTML = "";
    this.rows.forEach((row, i) => {
      const tr = h("tr");
      tr.dataset.key = JSON.stringify(i);
      for (const v of this._values(row)) tr.appendChild(this._cell(v));
      tr.addEventListener("click", (e) => this._select(i, tr, e));
      tr.addEventListener("dblclick", () => this.make_callback("activated", i));
      this.tbody.appendChild(tr);
    });
    this._paintSelection();
  }
  set_rows(rows) { this.rows = [...(rows || [])]; this.selected = []; this._render(); }
  set_data(data) { this.set_rows(data); }
  update_rows(rows) { this.set_rows(rows); }
  append_row(values) { this.rows.push(values); this._render(); }
  insert_row(index, values) { this.rows.splice(index, 0, values); this._render(); }
  delete_row(index) { this.rows.splice(index, 1); this._render(); }
  set_cell(row, col, value) {
    const r = this.rows[row];
    if (!r) throw new Error(`no row ${row}`);
    if (Array.isArray(r)) r[col] = value; else r[this.columns[col]?.key ?? col] = value;
    this._render();
  }
  clear() { this.rows = []; this.selected = []; this._render(); }
  get_row_count() { return this.rows.length; }
  sort_by_column(col, asc = true) {
    this._sort = [col, asc];
    const key = (r) => this._values(r)[col];
    this.rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (asc ? 1 : -1));
    this._render();
  }
}

export class TreeView extends DataView {
  constructor(options = {}) {
    super(options, "rw-treeview");
    this.tree = [];
    this.expanded = new Set();
  }
  // Nodes: {key, values: [...], children: [...]}; a path is the list of keys from the root.
  _node(path) {
    let nodes = this.tree, node = null;
    for (const k of path || []) {
      node = nodes.find((n) => n.key === k);
      if (!node) return null;
      nodes = node.children || (node.children = []);
    }
    return node;
  }
  _render() {
    if (!this.tree) return;
    this.tbody.innerHTML = "";
    const walk = (nodes, path, depth) => {
      for (const n of nodes) {
        const p = [...path, n.key];
        const id = JSON.stringify(p);
        const tr = h("tr");
        tr.dataset.key = id;
        const values = n.values ?? [n.key];
        values.forEach((v, i) => {
          const td = this._cell(v);
          if (i === 0) {
            td.style.paddingLeft = `${8 + depth * 18}px`;
            const hasKids = n.children && n.children.length;
            const tw = h("span", `rw-twisty ${hasKids ? "" : "rw-leaf"}`, hasKids ? (this.expanded.has(id) ? "▾" : "▸") : "");
            tw.addEventListener("click", (e) => { e.stopPropagation(); this.expanded.has(id) ? this.collapse_item(p, true) : this.expand_item(p, true); });
            td.prepend(tw);
          }
          tr.appendChild(td);
        });
        tr.addEventListener("click", (e) => this._select(p, tr, e));
        tr.addEventListener("dblclick", () => this.make_callback("activated", p));
        this.tbody.appendChild(tr);
        if (n.children && this.expanded.has(id)) walk(n.children, p, depth + 1);
      }
    };
    walk(this.tree, [], 0);
    this._paintSelection();
  }
  set_tree(tree) { this.tree = structuredClone(tree || []); this.selected = []; this._render(); }
  set_data(tree) { this.set_tree(tree); }
  add_item(parent, key, values) {
    const list = parent && parent.length ? (this._node(parent)?.children) : this.tree;
    if (!list) throw new Error(`no item ${JSON.stringify(parent)}`);
    list.push({ key, values, children: [] });
    this._render();
  }
  remove_item(path) {
    const parent = path.length > 1 ? this._node(path.slice(0, -1))?.children : this.tree;
    const i = parent ? parent.findIndex((n) => n.key === path.at(-1)) : -1;
    if (i >= 0) parent.splice(i, 1);
    this._render();
  }
  set_cell(path, col, value) {
    const n = this._node(path);
    if (!n) throw new Error(`no item ${JSON.stringify(path)}`);
    const i = typeof col === "number" ? col : this.columns.findIndex((c) => c.key === col);
    n.values[i] = value;
    this._render();
  }
  expand_item(path, fire = false) { this.expanded.add(JSON.stringify(path)); this._render(); if (fire) this.make_callback("expanded", path); }
  collapse_item(path, fire = false) { this.expanded.delete(JSON.stringify(path)); this._render(); if (fire) this.make_callback("collapsed", path); }
  expand_all() {
    const walk = (nodes, path) => nodes.forEach((n) => { const p = [...path, n.key]; if (n.children?.length) { this.expanded.add(JSON.stringify(p)); walk(n.children, p); } });
    walk(this.tree, []);
    this._render();
  }
  collapse_all() { this.expanded.clear(); this._render(); }
  get_expanded() { return [...this.expanded].map((s) => JSON.parse(s)); }
  clear() { this.tree = []; this.expanded.clear(); this.selected = []; this._render(); }
  get_row_count() { return this.tbody.rows.length; }
  sort_by_column(col, asc = true) {
    this._sort = [col, asc];
    const sortNodes = (nodes) => { nodes.sort((a, b) => ((a.values?.[col] > b.values?.[col]) ? 1 : (a.values?.[col] < b.values?.[col]) ? -1 : 0) * (asc ? 1 : -1)); nodes.forEach((n) => n.children && sortNodes(n.children)); };
    sortNodes(this.tree);
    this._render();
  }
}
