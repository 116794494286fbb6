// <rh-terminal executor="NAME">: a terminal (xterm.js + fit addon) on an
// `always` executor with a TTY. Sends {"stdin": base64} for keys and
// {"size": {cols, rows}} when it is resized; writes output as bytes
// (xterm decodes UTF-8 across chunks, so a character split between two
// frames is fine). Restarts and exits are written into the terminal.

import { outputOf, toBase64 } from "./codec.js";
import { h, loadVendor, RoomElement, vendorStylesheet } from "./element.js";

const THEME = {
  background: "#0b1020",
  foreground: "#e2e8f0",
  cursor: "#93c5fd",
  selectionBackground: "#334155",
};

function dim(text) {
  return `\r\n\x1b[2m${text}\x1b[0m\r\n`;
}

export class RhTerminal extends RoomElement {
  build() {
    this.chip = h("span", { class: "rh-chip" }, "starting…");
    this.screen = h("div", { class: "rh-terminal-screen" });
    this.append(
      h("div", { class: "rh-bar" },
        h("span", { class: "rh-title" }, this.getAttribute("label") || "Terminal"),
        this.chip),
      this.screen,
    );
    this.pending = []; // work waiting for xterm to load
    this.term = null;
    this.load();
  }

  async load() {
    let xterm, fit;
    try {
      [xterm, fit] = await loadVendor("@xterm/xterm", "@xterm/addon-fit");
    } catch (error) {
      this.pending = null; // nothing will ever be written: keep nothing
      this.setChip("unavailable", "fail");
      this.failed = true;
      this.vendorFailed(error);
      return;
    }
    vendorStylesheet("@xterm/xterm/css/xterm.css");
    const term = new xterm.Terminal({
      cursorBlink: true,
      fontSize: 14,
      fontFamily: 'ui-monospace, "JetBrains Mono", "DejaVu Sans Mono", Menlo, Consolas, monospace',
      scrollback: 5000,
      theme: THEME,
    });
    this.fitAddon = new fit.FitAddon();
    term.loadAddon(this.fitAddon);
    term.open(this.screen);
    term.onData((data) => this.send({ stdin: toBase64(data) }));
    term.onBinary((data) => this.send({ stdin: toBase64(Uint8Array.from(data, (c) => c.charCodeAt(0))) }));
    term.onResize(() => this.sendSize());
    this.term = term;
    this.resizeObserver = new ResizeObserver(() => this.fit());
    this.resizeObserver.observe(this.screen);
    this.fit();
    for (const work of this.pending.splice(0)) work(term);
    this.sendSize();
  }

  /** Run `work(term)` now, or once xterm has loaded. */
  withTerm(work) {
    if (this.term) work(this.term);
    else this.pending?.push(work);
  }

  fit() {
    if (!this.term || !this.screen.offsetParent) return; // hidden: keep the last size
    try {
      this.fitAddon.fit();
    } catch {
      // not laid out yet
    }
  }

  sendSize() {
    if (!this.term || !this.room?.isOpen || !this.room.joined) return; // re-sent on every join
    this.send({ size: { cols: this.term.cols, rows: this.term.rows } });
  }

  /** Focus the terminal (keys go to the program). */
  focus() {
    this.withTerm((term) => term.focus());
  }

  onJoined() {
    // The server replays the recent output (scrollback) after joining: start clean.
    this.withTerm((term) => term.reset());
    this.sendSize();
  }

  onConnection(state) {
    if (state === "open") this.setChip("joining…", "");
    else this.setChip(state === "closed" ? "disconnected" : "offline", "warn");
    this.classList.toggle("rh-offline", state !== "open");
  }

  onMessage(message) {
    switch (message.type) {
      case "output": {
        const out = outputOf(message);
        if (!out) break;
        if (this.chip.dataset.kind !== "ok") this.setChip("running", "ok");
        this.withTerm((term) => term.write(out.bytes));
        break;
      }
      case "state":
        this.setChip(message.running ? "running" : "starting…", message.running ? "ok" : "");
        break;
      case "exited": {
        const code = message.exitCode === null ? "could not start" : `exited with code ${message.exitCode}`;
        const again = message.restartIn !== undefined ? `; restarting in ${message.restartIn} s` : "";
        this.setChip("restarting", "warn");
        this.withTerm((term) => term.write(dim(`[${code}${again}]`)));
        break;
      }
      case "restarted":
        this.setChip("running", "ok");
        this.withTerm((term) => term.write(dim(`[restarted (${message.restarts})]`)));
        break;
      default:
        break; // types added later by the server are ignored
    }
  }

  onError(message) {
    super.onError(message);
    this.withTerm((term) => term.write(dim(`[${message.message}]`)));
  }

  setChip(text, kind) {
    if (this.failed) return;
    this.chip.textContent = text;
    this.chip.dataset.kind = kind;
  }

  /** Exposed for tests and scripts: the visible text of the terminal buffer. */
  text() {
    if (!this.term) return "";
    const buffer = this.term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i)?.translateToString(true) ?? "");
    return lines.join("\n");
  }
}
