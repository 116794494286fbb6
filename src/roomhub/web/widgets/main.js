// Entry point of /widgets/: connects the renderer to /widgets/ws on the page's own origin.
import { Remote } from "./remote.js";
import * as layout from "./layout.js";
import * as controls from "./controls.js";
import * as data from "./data.js";
import * as menus from "./menus.js";

const classes = { ...layout, ...controls, ...data, ...menus };
delete classes.registry;

const status = document.getElementById("rw-status");
const messages = {
  connecting: "Connecting…",
  reconnecting: "Connection lost — reconnecting…",
  busy: "The server is busy — retrying…",
};

function onStatus(state, reason) {
  document.body.dataset.state = state;
  if (state === "ready") { status.hidden = true; return; }
  status.hidden = false;
  if (state === "rejected") {
    status.classList.add("rw-rejected");
    status.innerHTML = "";
    const p = document.createElement("p");
    p.textContent = `Connection rejected: ${reason}`;
    const a = document.createElement("a");
    a.href = location.pathname;
    a.textContent = "Start a new session";
    status.append(p, a);
    return;
  }
  status.textContent = messages[state] || state;
}

const params = new URLSearchParams(location.search);
const wsUrl = new URL("ws", location.href);
wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";
wsUrl.search = "";
if (params.get("token")) wsUrl.searchParams.set("token", params.get("token"));  // hub auth token
const remote = new Remote(classes, { url: wsUrl.href, onStatus });
window.roomhubWidgets = remote;
remote.connect();
