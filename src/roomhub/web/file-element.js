// The base of the elements that show a file of the room (a file executor):
// it decodes the monitor's JSON lines (see codec.js) from the executor's
// output and hands each new content, or each read error, to the subclass.

import { fromBase64, MonitorReader, outputOf, utf8 } from "./codec.js";
import { RoomElement } from "./element.js";

export class FileMonitorElement extends RoomElement {
  get reader() {
    if (!this._reader) this._reader = new MonitorReader();
    return this._reader;
  }

  onJoined() {
    this.reader.reset(); // the server replays the file's state to a joiner
  }

  onMessage(message) {
    if (message.type !== "output") return;
    const out = outputOf(message);
    if (!out) return;
    for (const line of this.reader.feed(out.bytes)) {
      if (typeof line.contents === "string") {
        this.clearNotice("file-error");
        this.onFileContents(fromBase64(line.contents));
      } else if (typeof line.error === "string") {
        this.onFileError(utf8(fromBase64(line.error)));
      }
    }
  }

  /** The file's whole contents (bytes) changed. */
  onFileContents(_bytes) {}

  /** The file could not be read: ``text`` says why. */
  onFileError(text) {
    this.notice("warn", text, { key: "file-error" });
  }
}
