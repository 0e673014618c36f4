// The shell: who is logged in, the router from page addresses to views, and the flash message.
import { ApiError, loadSession, login, logout, session, whenUnauthorized } from "./api.js";
import { h, replace } from "./dom.js";
import { clearFlash } from "./flash.js";
import { startLive, stopLive } from "./live.js";
import { loginView } from "./views/login.js";
import { overviewView } from "./views/overview.js";
import { taskView } from "./views/task.js";
import { tasksView } from "./views/tasks.js";
import { workerView } from "./views/worker.js";
import { workersView } from "./views/workers.js";

const ROUTES = [
  [/^\/ui\/?$/, "overview", overviewView],
  [/^\/ui\/tasks\/?$/, "tasks", tasksView],
  [/^\/ui\/tasks\/(\d+)\/?$/, "tasks", taskView],
  [/^\/ui\/workers\/?$/, "workers", workersView],
  [/^\/ui\/workers\/(\d+)\/?$/, "workers", workerView],
];

const view = document.getElementById("view");
let cleanup = () => {};

export function navigate(path, { replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

function render() {
  cleanup();
  cleanup = () => {};
  clearFlash();
  const path = location.pathname;
  if (!session.name) {
    showLogin();
    return;
  }
  for (const [pattern, page, viewFn] of ROUTES) {
    const match = path.match(pattern);
    if (match) {
      markNav(page);
      replace(view);
      cleanup = viewFn(view, match.slice(1), new URLSearchParams(location.search)) || (() => {});
      return;
    }
  }
  replace(view, h("section", { class: "card" }, h("h1", {}, "Not found"),
    h("p", {}, "No page at this address. "), h("a", { href: "/ui/", dataset: { nav: "" } }, "Back to the overview")));
}

function markNav(page) {
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", a.dataset.page === page);
  }
}

function showHeader(loggedIn) {
  document.getElementById("nav").hidden = !loggedIn;
  document.getElementById("logout").hidden = !loggedIn;
  const who = document.getElementById("who");
  replace(who, loggedIn ? [h("span", { class: "muted" }, "signed in as "), session.name,
    h("span", { class: "scopes" }, session.scopes.join(" · "))] : []);
  if (loggedIn) startLive(document.getElementById("live"));
  else {
    stopLive();
    document.getElementById("live").hidden = true;
  }
}

function showLogin(message) {
  showHeader(false);
  replace(view);
  loginView(view, message, async (fields) => {
    await login(fields);
    afterLogin();
  });
}

function afterLogin() {
  showHeader(true);
  const target = location.pathname.startsWith("/ui/login") ? "/ui/" : location.pathname + location.search;
  navigate(target, { replaceState: true });
}

async function start() {
  whenUnauthorized(() => {
    session.name = null;
    cleanup();
    showLogin("Your session has ended; log in again.");
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await logout().catch(() => {});
    showLogin("Logged out.");
    history.replaceState(null, "", "/ui/");
  });
  document.addEventListener("click", (event) => {
    const a = event.target.closest && event.target.closest("a[data-nav]");
    if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    navigate(a.getAttribute("href"));
  });
  window.addEventListener("popstate", render);

  // A login link carries its one-time code in the fragment: it never reaches a server log.
  const code = new URLSearchParams(location.hash.slice(1)).get("code");
  if (code) {
    history.replaceState(null, "", "/ui/");
    try {
      await login({ code });
      afterLogin();
    } catch (error) {
      showLogin(error.message);
    }
    return;
  }
  try {
    await loadSession();
    showHeader(true);
    render();
  } catch (error) {
    showLogin(error instanceof ApiError && error.status === 401 ? undefined : error.message);
  }
}

start();
