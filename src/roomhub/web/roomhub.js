// roomhub's browser client (plain ES modules, no build step).
//
// A page loads, in its head:
//   <link rel="stylesheet" href="/static/roomhub.css">
//   <script src="/static/importmap.js"></script>      (before any module script)
//   <script type="module" src="/static/roomhub.js"></script>
// and places elements by executor name:
//   <rh-status></rh-status>
//   <rh-terminal executor="terminal"></rh-terminal>
//   <rh-button executor="run" label="Run"></rh-button>
//   <rh-text-editor executor="source" mode="python"></rh-text-editor>
//   <rh-text-viewer executor="source" mode="python"></rh-text-viewer>
//   <rh-image-viewer executor="plot" mime="image/png"></rh-image-viewer>
// Every element of the page shares one room connection: the page's URL plus
// `?roomName=` (added at random when missing; share the URL to share the room).

import { RhButton } from "./rh-button.js";
import { RhImageViewer } from "./rh-image-viewer.js";
import { RhStatus } from "./rh-status.js";
import { RhTerminal } from "./rh-terminal.js";
import { RhTextEditor, RhTextViewer } from "./rh-text.js";

export * from "./codec.js";
export * from "./connection.js";
export { loadVendor, RoomElement, VendorMissing } from "./element.js";
export { RhButton, RhImageViewer, RhStatus, RhTerminal, RhTextEditor, RhTextViewer };

const ELEMENTS = {
  "rh-status": RhStatus,
  "rh-terminal": RhTerminal,
  "rh-button": RhButton,
  "rh-text-viewer": RhTextViewer,
  "rh-text-editor": RhTextEditor,
  "rh-image-viewer": RhImageViewer,
};

for (const [name, element] of Object.entries(ELEMENTS)) {
  if (!customElements.get(name)) customElements.define(name, element);
}
