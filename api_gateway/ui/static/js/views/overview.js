// Overview: tasks by state, workers by state, frames in the last hour, and what waits and why.
import { api } from "../api.js";
import { h, link, number, replace, section, table } from "../dom.js";
import { follow } from "../live.js";

const TASK_STATES = ["queued", "rendering", "paused", "completed", "failed", "canceled"];
const WORKER_STATES = [["online", "online"], ["busy", "busy"], ["idle", "idle"], ["offline", "offline"],
  ["disabled", "disabled"]];

function tile(label, value, href, kind) {
  const body = [h("span", { class: "value" }, number(value)), h("span", { class: "label" }, label)];
  return href ? h("a", { class: `tile t-${kind}`, href, dataset: { nav: "" } }, body)
    : h("div", { class: `tile t-${kind}` }, body);
}

function draw(root, s) {
  const taskTotal = Object.values(s.tasks).reduce((a, b) => a + b, 0);
  replace(root,
    h("div", { class: "page-head" }, h("h1", {}, "Overview"),
      h("span", { class: "muted" }, `${number(taskTotal)} tasks · ${number(s.workers.total)} workers`)),
    h("div", { class: "columns" },
      section("Tasks by state",
        h("div", { class: "tiles", id: "task-states" },
          TASK_STATES.map((state) => tile(state, s.tasks[state] ?? 0, `/ui/tasks?status=${state}`, state)))),
      section("Workers",
        h("div", { class: "tiles", id: "worker-states" },
          WORKER_STATES.map(([key, label]) => tile(label, s.workers[key] ?? 0, "/ui/workers", key))))),
    h("div", { class: "columns" },
      section("Frames rendered in the last hour",
        h("p", { class: "big", id: "frames-last-hour" }, number(s.frames_last_hour))),
      section(`Waiting tasks (${number(s.waiting_total)})`,
        s.waiting.length === 0 ? h("p", { class: "muted" }, "Nothing is waiting: every queued task can run.")
          : table(["Task", "Client id", "Status", "Why it waits"], s.waiting.map((t) => h("tr", {},
            h("td", {}, link(`/ui/tasks/${t.id}`, `#${t.id}`)), h("td", {}, t.task_id ?? "–"),
            h("td", {}, h("span", { class: `badge s-${t.status}` }, t.status)),
            h("td", { class: "reason" }, t.waiting_reason))), { id: "waiting" }))));
}

export function overviewView(root) {
  document.title = "Overview · Corral";
  const refresh = async () => draw(root, await api("/summary"));
  refresh().catch((error) => replace(root, h("p", { class: "form-error" }, error.message)));
  return follow(() => true, refresh, 1000);
}
