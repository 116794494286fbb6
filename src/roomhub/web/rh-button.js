// <rh-button executor="NAME" label="Run">: runs a `once` executor.
// The button is disabled while the program runs or the room is not
// connected. Output is shown as it streams (stderr marked), kept whole at the
// end (a final line without a newline included) and cleared when the next
// run starts; then the exit code, or the timeout, or why it could not start.
// A click while it runs elsewhere gets the server's "busy" answer, shown.

import { fromBase64, outputOf } from "./codec.js";
import { h, RoomElement } from "./element.js";

const CSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07/g; // colours and titles: not shown in plain text

export function exitText(code) {
  if (code === null || code === undefined) return "no exit code";
  if (code < 0) return `killed by signal ${-code}`;
  return `exit code ${code}`;
}

export class RhButton extends RoomElement {
  static observedAttributes = ["executor", "label"];

  build() {
    this.running = false;
    this.known = false; // state received since the last join
    this.button = h("button", { type: "button", class: "rh-run", onclick: () => this.run() });
    this.chip = h("span", { class: "rh-chip rh-exit" });
    this.output = h("pre", { class: "rh-output", hidden: true, "aria-live": "polite" });
    this.updateLabel();
    this.append(h("div", { class: "rh-bar" }, this.button, this.chip), this.output);
    this.decoders = {};
  }

  attributeChangedCallback(name, before, after) {
    if (name === "label" && this.built) this.updateLabel();
    else super.attributeChangedCallback(name, before, after);
  }

  updateLabel() {
    this.button.textContent = this.getAttribute("label") || `Run ${this.executor || ""}`.trim();
  }

  run() {
    if (this.button.disabled) return;
    this.send(null); // interactive-widgets' "run" message
    this.button.disabled = true; // until "started" (or "busy") comes back
  }

  refresh() {
    this.button.disabled = this.running || !this.room?.isOpen || !this.known;
    this.classList.toggle("rh-running", this.running);
  }

  onConnection() {
    if (!this.room.isOpen) this.known = false;
    this.refresh();
  }

  onJoined() {
    this.known = false;
    this.refresh();
  }

  clearOutput() {
    this.output.textContent = "";
    this.output.hidden = true;
    this.decoders = {};
  }

  append_(stream, text) {
    if (!text) return;
    const clean = text.replace(CSI, "");
    const atEnd = this.output.scrollTop + this.output.clientHeight >= this.output.scrollHeight - 4;
    const last = this.output.lastChild;
    if (last && last.dataset.stream === stream) last.textContent += clean;
    else this.output.append(h("span", { class: `rh-${stream}`, "data-stream": stream }, clean));
    this.output.hidden = false;
    if (atEnd) this.output.scrollTop = this.output.scrollHeight;
  }

  flushOutput() {
    for (const [stream, decoder] of Object.entries(this.decoders)) this.append_(stream, decoder.decode());
    this.decoders = {};
  }

  setChip(text, kind) {
    this.chip.textContent = text;
    this.chip.dataset.kind = kind || "";
  }

  onMessage(message) {
    switch (message.type) {
      case "state":
        this.known = true;
        this.clearOutput();
        this.running = Boolean(message.running);
        if (this.running) this.setChip("running…", "busy");
        else if (message.exitCode !== null && message.exitCode !== undefined) {
          this.setChip(`last run: ${exitText(message.exitCode)}`, message.exitCode === 0 ? "ok" : "fail");
        } else this.setChip("", "");
        break;
      case "started":
        this.known = true;
        this.running = true;
        this.clearOutput();
        for (const key of ["busy", "timeout", "errored"]) this.clearNotice(key);
        this.setChip("running…", "busy");
        break;
      case "output": {
        const out = outputOf(message);
        if (!out) break;
        const decoder = (this.decoders[out.stream] ??= new TextDecoder("utf-8"));
        this.append_(out.stream, decoder.decode(out.bytes, { stream: true }));
        break;
      }
      case "timeout":
        this.setChip(`timed out after ${message.after} s`, "fail");
        this.notice("warn", `Stopped: the program ran longer than ${message.after} s.`, { key: "timeout" });
        break;
      case "finished": {
        this.flushOutput();
        this.running = false;
        const code = message.exitCode;
        if (message.timedOut) this.setChip(`timed out (${exitText(code)})`, "fail");
        else if (code === undefined) this.setChip("finished", "ok"); // an older server: no exit code
        else this.setChip(exitText(code), code === 0 ? "ok" : "fail");
        break;
      }
      case "errored": {
        this.flushOutput();
        this.running = false;
        let text = "the program could not run";
        try {
          text = new TextDecoder().decode(fromBase64(message.message));
        } catch {
          // keep the generic text
        }
        this.setChip("failed", "fail");
        this.notice("error", text, { key: "errored" });
        break;
      }
      case "busy":
        this.notice("info", "Already running: wait for it to finish.", { key: "busy", timeout: 4000 });
        break;
      default:
        break;
    }
    this.refresh();
  }

  onError(message) {
    super.onError(message);
    this.refresh();
  }
}
