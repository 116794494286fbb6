// <rh-image-viewer executor="NAME" mime="image/png">: shows an image file of
// the room (a file executor), updated whenever the file changes on disk.

import { h } from "./element.js";
import { FileMonitorElement } from "./file-element.js";

export class RhImageViewer extends FileMonitorElement {
  static observedAttributes = ["executor", "mime", "alt"];

  build() {
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

  onFileContents(bytes) {
    this.show(bytes);
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
