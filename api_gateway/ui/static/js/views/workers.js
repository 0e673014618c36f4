// Workers table: status, connection, current work, readings, versions; Enable / Disable.
import { api, can } from "../api.js";
import { ago, badge, h, link, percent, replace, table } from "../dom.js";
import { act } from "../flash.js";
import { follow } from "../live.js";

export function versionText(versions) {
  const parts = Object.entries(versions || {}).map(([tool, v]) => `${tool} ${v}`);
  return parts.length ? parts.join(", ") : "–";
}

export function toggle(worker) {
  if (!can("operate")) return null;
  const next = worker.status === "disabled" ? "enabled" : "disabled";
  return h("button", { type: "button", class: next === "disabled" ? "danger small" : "small", dataset: { action: next, worker: worker.name },
    onclick: () => act(`${next === "disabled" ? "Disable" : "Enable"} sent for ${worker.name}`,
      () => api(`/workers/${worker.id}`, { method: "PATCH", body: { status: next } })) },
  next === "disabled" ? "Disable" : "Enable");
}

function row(w) {
  const r = w.readings || {};
  const current = w.current_task ? [link(`/ui/tasks/${w.current_task}`, `#${w.current_task}`),
    w.current_chunk ? h("span", { class: "muted" }, ` · chunk id ${w.current_chunk}`) : null] : "–";
  return h("tr", { dataset: { worker: w.name } },
    h("td", {}, link(`/ui/workers/${w.id}`, w.name)), h("td", { class: "ellipsis hostname" }, w.hostname),
    h("td", {}, badge(w.status)), h("td", {}, badge(w.connection)), h("td", { class: "ellipsis" }, w.activity || "–"),
    h("td", {}, current), h("td", { class: "num" }, percent(r.cpu_percent)), h("td", { class: "num" }, percent(r.mem_percent)),
    h("td", { class: "num" }, r.load_1min ?? "–"), h("td", {}, (w.pools || []).join(", ")),
    h("td", { class: "ellipsis" }, versionText(w.versions)), h("td", {}, ago(w.last_heartbeat)),
    can("operate") ? h("td", {}, toggle(w)) : null);
}

export function workersView(root) {
  document.title = "Workers · Corral";
  const body = h("tbody", { id: "workers-body" });
  const count = h("span", { class: "muted" });
  const headers = ["Name", "Hostname", "Status", "Connection", "Activity", "Current task", "CPU", "Memory", "Load",
    "Pools", "Versions", "Last seen"];
  if (can("operate")) headers.push("");
  replace(root, h("div", { class: "page-head" }, h("h1", {}, "Workers"), count),
    h("section", { class: "card" }, h("div", { class: "scroll" }, table(headers, [], { id: "workers" }))));
  root.querySelector("#workers tbody").replaceWith(body);
  const refresh = async () => {
    const workers = Object.entries(await api("/workers")).map(([name, w]) => ({ ...w, name }));
    const online = workers.filter((w) => w.connection === "online").length;
    replace(count, `${workers.length} workers · ${online} online`);
    replace(body, workers.length ? workers.map(row)
      : h("tr", {}, h("td", { colspan: headers.length, class: "muted empty" }, "No worker has connected yet.")));
  };
  refresh().catch((error) => replace(body, h("tr", {}, h("td", { class: "form-error" }, error.message))));
  return follow((c) => c.type === "worker" || c.type === "heartbeats", refresh, 1000);
}
