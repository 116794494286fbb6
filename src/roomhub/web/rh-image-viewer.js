// <rh-image-viewer executor="NAME" mime="image/png">: shows an image file of
// the room (a file executor), updated whenever the file changes on disk.

import { fromBase64, MonitorReader, outputOf, utf8 } from "./codec.js";
import { h, RoomElement } from "./element.js";

export class RhImageViewer extends RoomElement {
  static observedAttributes = ["executor", "mime", "alt"];

  build() {
    this.reader = new MonitorReader();
    this.url = null;
    this.image = h("img", {
      class: "rh-image",
      alt: this.getAttribute("alt") || this.executor || "image",
      onerror: () => this.url && this.notice("warn",
        `The file is not a ${this.getAttribute("mime") || "image/png"} image the browser can show.`,
        { key: "file-error" }),
    });
    this.placeholder = h("div", { class: "rh-placeholder" }, "waiting for the image…");
    this.image.hidden = true;
    this.append(this.image, this.placeholder);
  }

  attributeChangedCallback(name, before, after) {
    if (name === "alt" && this.built) this.image.alt = after || "";
    else if (name === "executor") super.attributeChangedCallback(name, before, after);
  }

  onJoined() {
    this.reader.reset();
  }

  onMessage(message) {
    if (message.type !== "output") return;
    const out = outputOf(message);
    if (!out) return;
    for (const line of this.reader.feed(out.bytes)) {
      if (typeof line.contents === "string") this.show(fromBase64(line.contents));
      else if (typeof line.error === "string") {
        this.notice("warn", utf8(fromBase64(line.error)), { key: "file-error" });
      }
    }
  }

  show(bytes) {
    this.clearNotice("file-error");
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    if (!bytes.length) {
      this.image.hidden = true;
      this.placeholder.hidden = false;
      this.placeholder.textContent = "the file is empty";
      return;
    }
    this.url = URL.createObjectURL(new Blob([bytes], { type: this.getAttribute("mime") || "image/png" }));
    this.image.src = this.url;
    this.image.hidden = false;
    this.placeholder.hidden = true;
  }
}
