// Worker page: identity, readings, what it runs, its recent attempts; Enable / Disable.
import { api } from "../api.js";
import { ago, badge, duration, h, link, percent, replace, section, table, when } from "../dom.js";
import { follow } from "../live.js";
import { toggle, versionText } from "./workers.js";

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null || v === undefined || v === "" ? "–" : v)]));
}

function readingRows(values) {
  const entries = Object.entries(values || {}).filter(([, v]) => typeof v !== "object");
  const nested = Object.entries(values || {}).filter(([, v]) => v && typeof v === "object")
    .flatMap(([k, v]) => Object.entries(v).map(([k2, v2]) => [`${k} ${k2}`, v2]));
  return [...entries, ...nested].map(([k, v]) => [k.replace(/^worker_/, "").replaceAll("_", " "), String(v)]);
}

export function workerView(root, [idText]) {
  const id = Number(idText);
  document.title = `Worker ${id} · Corral`;
  const head = h("div", { class: "page-head" });
  const info = h("div", {});
  const readings = h("div", { id: "readings" });
  const attempts = h("div", { id: "attempts" });
  replace(root, head, h("div", { class: "columns" }, section("Worker", info), section("Readings", readings)),
    section("Recent attempts", attempts));

  const refreshWorker = async () => {
    const w = await api(`/workers/${id}`);
    document.title = `${w.name} · Corral`;
    const r = w.readings || {};
    replace(head, h("h1", {}, w.name), badge(w.status), badge(w.connection), toggle(w));
    replace(info, facts([["Hostname", h("span", { class: "hostname" }, w.hostname)], ["System", w.system], ["IP address", w.ip_address],
      ["Activity", w.activity], ["Current task", w.current_task ? link(`/ui/tasks/${w.current_task}`, `#${w.current_task}`) : null],
      ["Current chunk", w.current_chunk], ["Pools", (w.pools || []).join(", ")], ["Commands", (w.commands || []).join(", ")],
      ["Versions", versionText(w.versions)], ["Last seen", `${ago(w.last_heartbeat)} (${when(w.last_heartbeat)})`]]));
    replace(readings, h("div", { class: "tiles" },
      h("div", { class: "tile" }, h("span", { class: "value" }, percent(r.cpu_percent)), h("span", { class: "label" }, "CPU")),
      h("div", { class: "tile" }, h("span", { class: "value" }, percent(r.mem_percent)), h("span", { class: "label" }, "memory")),
      h("div", { class: "tile" }, h("span", { class: "value" }, r.load_1min ?? "–"), h("span", { class: "label" }, "load (1 min)"))),
    facts(readingRows({ ...w.update_less_frequent, ...w.update_frequent })));
  };
  const refreshAttempts = async () => {
    const rows = (await api(`/workers/${id}/attempts?limit=30`)).attempts;
    replace(attempts, rows.length === 0 ? h("p", { class: "muted" }, "This worker has not run anything yet.")
      : table(["Task", "Chunk", "Attempt", "Outcome", "Started", "Duration", "Reason"], rows.map((a) => h("tr", {},
        h("td", {}, link(`/ui/tasks/${a.task_id}`, `#${a.task_id}`)), h("td", { class: "num" }, a.chunk_index),
        h("td", { class: "num" }, a.number), h("td", {}, badge(a.outcome)), h("td", {}, when(a.started_at)),
        h("td", {}, duration(a.started_at, a.finished_at)), h("td", { class: "reason" }, a.reason || "–")))));
  };
  Promise.all([refreshWorker(), refreshAttempts()]).catch((error) => replace(head, h("h1", {}, `Worker #${id}`),
    h("p", { class: "form-error" }, error.message)));
  const stops = [
    follow((c) => (c.type === "worker" && c.id === id) || c.type === "heartbeats", refreshWorker, 1000),
    follow((c) => c.type === "worker" && c.id === id, refreshAttempts, 1000),
  ];
  return () => stops.forEach((stop) => stop());
}
