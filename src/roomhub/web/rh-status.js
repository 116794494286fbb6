// <rh-status>: the state of the page's room connection (connecting, open,
// reconnecting with the countdown and the reason the socket closed), errors
// about the room itself, the room name with a "copy link" button (sharing the
// URL shares the room), and the "run make setup" hint when the browser
// libraries are missing.

import { pageRoom } from "./connection.js";
import { h } from "./element.js";

const CLOSE_MEANINGS = {
  1000: "closed",
  1001: "the hub is shutting down",
  1006: "connection lost",
  1008: "policy violation",
  1009: "a message was too big",
  1011: "hub error",
  1012: "the hub is restarting",
  1013: "limit reached, try again later",
  4001: "not authorised",
  4003: "access denied",
  4008: "too slow to keep up",
  4011: "the room could not be created",
};

export function describeClose(close) {
  if (!close) return "";
  const meaning = close.reason || CLOSE_MEANINGS[close.code] || "closed";
  return `${meaning} (code ${close.code})`;
}

export class RhStatus extends HTMLElement {
  connectedCallback() {
    if (!this.built) {
      this.built = true;
      this.classList.add("rh-status");
      this.setAttribute("role", "status");
      this.dot = h("span", { class: "rh-dot", "aria-hidden": "true" });
      this.label = h("span", { class: "rh-state" });
      this.detail = h("span", { class: "rh-detail" });
      this.retry = h("button", { type: "button", class: "rh-retry", hidden: true,
        onclick: () => this.room.reconnectNow() }, "Retry now");
      this.copy = h("button", { type: "button", class: "rh-copy", onclick: () => this.copyLink() }, "Copy link");
      this.error = h("span", { class: "rh-status-error", hidden: true });
      this.append(this.dot, this.label, this.detail, this.error, this.retry, this.copy);
      const vendor = globalThis.roomhubVendor;
      if (vendor && !vendor.ok) {
        this.after(h("div", { class: "rh-banner rh-error" }, `Widgets cannot load: ${vendor.hint}.`));
      }
    }
    this.room = pageRoom();
    this.onState = () => this.render();
    this.onRoomError = (event) => {
      const { executor, message, code } = event.detail;
      this.roomError = `${executor ? `${executor}: ` : ""}${message || code}`;
      this.render();
      clearTimeout(this.errorTimer); // shown until the next join, or 20 s
      this.errorTimer = setTimeout(() => {
        this.roomError = null;
        this.render();
      }, 20000);
    };
    this.onJoined = () => {
      this.roomError = null;
      this.render();
    };
    this.room.addEventListener("state", this.onState);
    this.room.addEventListener("room-error", this.onRoomError);
    this.room.addEventListener("joined", this.onJoined);
    this.render();
  }

  disconnectedCallback() {
    this.room.removeEventListener("state", this.onState);
    this.room.removeEventListener("room-error", this.onRoomError);
    this.room.removeEventListener("joined", this.onJoined);
    clearInterval(this.ticker);
  }

  render() {
    const room = this.room;
    const socket = room.socket;
    const state = room.state;
    this.dataset.state = state;
    clearInterval(this.ticker);
    this.retry.hidden = state !== "reconnecting" || !!socket.ws;
    let detail = "";
    if (state === "open") {
      this.label.textContent = room.joined ? "Connected" : "Joining…";
      detail = `room ${room.roomName}`;
    } else if (state === "connecting") {
      this.label.textContent = "Connecting…";
    } else if (state === "reconnecting") {
      this.label.textContent = socket.ws ? "Reconnecting…" : "Disconnected";
      const until = Date.now() + socket.retryIn;
      const tick = () => {
        const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
        const why = describeClose(socket.lastClose);
        this.detail.textContent = socket.ws ? `trying… (${why})` : `in ${left} s (${why})`;
      };
      tick();
      this.ticker = setInterval(tick, 500);
      detail = null;
    } else {
      this.label.textContent = "Closed";
      detail = describeClose(socket.lastClose);
    }
    if (detail !== null) this.detail.textContent = detail;
    this.error.textContent = this.roomError || "";
    this.error.title = this.roomError || "";
    this.error.hidden = !this.roomError;
    this.classList.toggle("rh-has-error", Boolean(this.roomError));
  }

  async copyLink() {
    try {
      await navigator.clipboard.writeText(location.href);
      this.copy.textContent = "Copied";
    } catch {
      window.prompt("Share this link to share the room:", location.href);
    }
    setTimeout(() => (this.copy.textContent = "Copy link"), 1500);
  }
}
