// The login page: one field, labelled "API token".
import { h, replace } from "../dom.js";

export function loginView(root, message, submit) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password",
    required: true, spellcheck: "false", placeholder: "corral_…" });
  const error = h("p", { class: "form-error", role: "alert", id: "login-error" });
  if (message) error.textContent = message;
  const button = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h("form", { class: "login", id: "login-form" },
    h("h1", {}, "Log in to Corral"),
    h("p", { class: "muted" }, "Paste an API token (from ", h("code", {}, "corral up"), " or ",
      h("code", {}, "corral token create"), "). The page keeps a session cookie, not the token."),
    h("label", { for: "token" }, "API token"), input, error, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    error.textContent = "";
    try {
      await submit({ token: input.value.trim() });
    } catch (failure) {
      error.textContent = failure.message;
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  replace(root, form);
  input.focus();
}
