// Loads the module for web/tests/client.mjs, which drives it through
// `window.sigil` (the module's exports, once `init()` is done).
import init, * as sigil from "../pkg/sigil_wasm.js";

await init();
window.sigil = sigil;
document.body.dataset.ready = "true";
