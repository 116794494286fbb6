// <rh-text-viewer executor="NAME" mode="python"> and
// <rh-text-editor executor="NAME" mode="python">: CodeMirror 6 views of a
// file executor. The hub pushes the file as monitor lines
// ({"contents": base64} or {"error": base64}) inside output frames, on join
// and on every change.
//
// The editor saves with Ctrl-S / Cmd-S or its Save button (a monitor line
// {"contents": base64} wrapped in {"stdin": ...}). When the file changes on
// disk while it has unsaved edits it does not overwrite them: it says so and
// lets the user load the disk version or keep their own.

import { fileWrite, utf8 } from "./codec.js";
import { h, loadVendor } from "./element.js";
import { FileMonitorElement } from "./file-element.js";

const LANGUAGES = {
  python: async () => (await loadVendor("@codemirror/lang-python"))[0].python(),
};

let codemirror = null;

/** CodeMirror's modules, loaded once: {cm, state, view}. */
function loadCodeMirror() {
  codemirror ??= loadVendor("codemirror", "@codemirror/state", "@codemirror/view")
    .then(([cm, state, view]) => ({ cm, state, view }));
  return codemirror;
}

/** The change turning `doc` into `text`, touching only the part that differs (cursors stay put). */
export function minimalChange(doc, text) {
  let start = 0;
  const max = Math.min(doc.length, text.length);
  while (start < max && doc.charCodeAt(start) === text.charCodeAt(start)) start++;
  let endDoc = doc.length;
  let endText = text.length;
  while (endDoc > start && endText > start && doc.charCodeAt(endDoc - 1) === text.charCodeAt(endText - 1)) {
    endDoc--;
    endText--;
  }
  return { from: start, to: endDoc, insert: text.slice(start, endText) };
}

class FileElement extends FileMonitorElement {
  build() {
    this.view = null;
    this.pendingText = null; // contents that arrived before CodeMirror loaded
    this.chip = h("span", { class: "rh-chip" });
    this.bar = h("div", { class: "rh-bar" },
      h("span", { class: "rh-title" }, this.getAttribute("label") || this.defaultTitle()));
    this.editorBox = h("div", { class: "rh-code" });
    this.append(this.bar, this.editorBox);
    this.buildBar();
    this.bar.append(this.chip);
    this.load();
  }

  defaultTitle() {
    return this.executor || "file";
  }

  buildBar() {}

  async load() {
    let lib;
    let language = [];
    try {
      lib = await loadCodeMirror();
      const mode = this.getAttribute("mode");
      if (mode && LANGUAGES[mode]) language = [await LANGUAGES[mode]()];
      else if (mode) console.warn(`roomhub: no CodeMirror mode ${mode}; showing plain text`);
    } catch (error) {
      this.setChip("unavailable", "fail");
      this.vendorFailed(error);
      return;
    }
    this.lib = lib;
    this.view = new lib.view.EditorView({
      parent: this.editorBox,
      state: lib.state.EditorState.create({ doc: "", extensions: [...this.extensions(lib), language] }),
    });
    if (this.pendingText !== null) {
      const text = this.pendingText;
      this.pendingText = null;
      this.onContents(text);
    }
  }

  extensions(_lib) {
    return [];
  }

  get text() {
    return this.view ? this.view.state.doc.toString() : "";
  }

  setText(text) {
    if (!this.view) return;
    const change = minimalChange(this.view.state.doc.toString(), text);
    if (change.from === change.to && !change.insert) return;
    this.view.dispatch({ changes: change });
  }

  setChip(text, kind) {
    this.chip.textContent = text;
    this.chip.dataset.kind = kind || "";
  }

  onFileContents(bytes) {
    const text = utf8(bytes);
    if (this.view) this.onContents(text);
    else this.pendingText = text;
  }

  onFileError(text) {
    this.setChip("unreadable", "fail");
    super.onFileError(text);
  }

  onContents(text) {
    this.setText(text);
    this.setChip("", "");
  }
}

export class RhTextViewer extends FileElement {
  extensions({ cm, state, view }) {
    return [cm.basicSetup, state.EditorState.readOnly.of(true), view.EditorView.editable.of(false)];
  }
}

export class RhTextEditor extends FileElement {
  buildBar() {
    this.base = null; // the contents on disk, as last received
    this.saving = null; // the text of a save not yet confirmed by the hub
    this.conflict = null; // disk contents that arrived over unsaved edits
    this.saveButton = h("button", { type: "button", class: "rh-save", onclick: () => this.save() }, "Save");
    this.bar.append(this.saveButton);
    this.onBeforeUnload = (event) => {
      if (this.dirty) event.preventDefault();
    };
  }

  connectedCallback() {
    super.connectedCallback();
    window.addEventListener("beforeunload", this.onBeforeUnload);
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    window.removeEventListener("beforeunload", this.onBeforeUnload);
  }

  extensions({ cm, state, view }) {
    const save = { key: "Mod-s", preventDefault: true, run: () => (this.save(), true) };
    return [
      state.Prec.highest(view.keymap.of([save])),
      cm.basicSetup,
      view.EditorView.updateListener.of((update) => update.docChanged && this.showDirty()),
    ];
  }

  /** True when the editor holds edits that are not on disk. */
  get dirty() {
    return this.view !== null && this.base !== null ? this.text !== this.base : false;
  }

  showDirty() {
    if (this.saving !== null) this.setChip("saving…", "busy");
    else if (this.conflict !== null) this.setChip("changed on disk", "fail");
    else if (this.dirty) this.setChip("unsaved changes", "warn");
    else this.setChip(this.base === null ? "" : "saved", "ok");
  }

  /** Write the editor's text to the file (queued while disconnected). */
  save() {
    if (!this.view) return;
    const text = this.text;
    this.conflict = null; // saving is choosing this version
    this.clearNotice("conflict");
    if (text === this.base) {
      this.showDirty(); // nothing new: the hub would not answer
      return;
    }
    this.saving = text;
    this.send(fileWrite(text));
    if (!this.room.isOpen) this.notice("info", "Offline: the save is sent when the connection is back.", { key: "offline" });
    this.showDirty();
  }

  onContents(text) {
    this.clearNotice("offline");
    if (this.saving !== null && text === this.saving) {
      this.saving = null; // our save came back from disk
      this.base = text;
    } else if (this.base === null || !this.dirty || text === this.text) {
      this.base = text;
      this.conflict = null;
      this.clearNotice("conflict");
      this.setText(text);
    } else {
      this.saving = null;
      this.conflict = text;
      this.notice("warn", "This file changed on disk while you were editing it.", {
        key: "conflict",
        actions: [
          ["Load the disk version", (box) => this.resolve(true, box)],
          ["Keep my edits", (box) => this.resolve(false, box)],
        ],
      });
    }
    this.showDirty();
  }

  resolve(loadDisk, box) {
    box.remove();
    if (this.conflict === null) return;
    this.base = this.conflict;
    this.conflict = null;
    if (loadDisk) this.setText(this.base);
    this.showDirty();
  }

  onFileError(text) {
    super.onFileError(text);
    this.saving = null;
  }

  onError(message) {
    super.onError(message);
    this.saving = null; // e.g. too-large or write-failed: the save did not happen
    this.showDirty();
  }
}
