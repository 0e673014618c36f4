// The one message line under the header: what an action did, or the API's reason for refusing it.
import { ApiError } from "./api.js";
import { h, replace } from "./dom.js";

const flashBox = document.getElementById("flash");

export function flash(message, kind = "error") {
  replace(flashBox, h("span", {}, message),
    h("button", { type: "button", class: "quiet", "aria-label": "Dismiss", onclick: () => { flashBox.hidden = true; } }, "×"));
  flashBox.className = `flash ${kind}`;
  flashBox.hidden = false;
}

export function clearFlash() {
  flashBox.hidden = true;
}

// Run an action; show the API's message if it is refused. Returns true when it went through.
export async function act(label, fn) {
  try {
    await fn();
    flash(label, "ok");
    return true;
  } catch (error) {
    flash(error instanceof ApiError ? error.message : String(error));
    return false;
  }
}

