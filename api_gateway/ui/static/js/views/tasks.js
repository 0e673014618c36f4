// Tasks table: filters, search, sort and paging are the API's (GET /tasks); bulk pause/resume/cancel.
import { act } from "../flash.js";
import { api, can } from "../api.js";
import { badge, h, link, number, progress, replace, when } from "../dom.js";
import { follow } from "../live.js";

const STATUSES = ["queued", "rendering", "paused", "completed", "failed", "canceled"];
const PAGE = 50;
const COLUMNS = [["id", "Id"], [null, "Client id"], ["type", "Type"], ["status", "Status"], [null, "Progress"],
  ["priority", "Priority"], [null, "Pool"], ["created_at", "Created"], ["started_at", "Started"],
  ["finished_at", "Finished"]];
let knownTypes = null;

async function taskTypes() {
  if (!knownTypes) {
    knownTypes = (await api("/jobtypes")).jobtypes.map((t) => t.name);
  }
  return knownTypes;
}

function select(id, label, options, value) {
  return h("label", { class: "field" }, h("span", {}, label),
    h("select", { id }, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
}

export function tasksView(root, _match, params) {
  document.title = "Tasks · Corral";
  const state = {
    status: params.get("status") || "", type: params.get("type") || "", q: params.get("q") || "",
    sort: params.get("sort") || "-id", page: Math.max(0, Number(params.get("page") || 0) | 0),
  };
  const selected = new Set();
  const body = h("tbody", { id: "tasks-body" });
  const pager = h("div", { class: "pager" });
  const bulk = h("div", { class: "bulk", hidden: !can("operate") });
  const head = h("thead", {});

  const setUrl = () => {
    const q = new URLSearchParams();
    for (const key of ["status", "type", "q"]) if (state[key]) q.set(key, state[key]);
    if (state.sort !== "-id") q.set("sort", state.sort);
    if (state.page) q.set("page", state.page);
    history.replaceState(null, "", `/ui/tasks${q.toString() ? `?${q}` : ""}`);
  };

  const drawHead = () => replace(head, h("tr", {},
    can("operate") ? h("th", { class: "check" }, h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all",
      onchange: (e) => { for (const box of body.querySelectorAll("input[type=checkbox]")) { box.checked = e.target.checked; box.dispatchEvent(new Event("change")); } } })) : null,
    COLUMNS.map(([key, label]) => {
      if (!key) return h("th", {}, label);
      const active = state.sort.replace("-", "") === key;
      const arrow = active ? (state.sort.startsWith("-") ? " ▼" : " ▲") : "";
      return h("th", { class: active ? "sorted" : "" }, h("button", { type: "button", class: "sort", dataset: { sort: key },
        onclick: () => { state.sort = active && !state.sort.startsWith("-") ? `-${key}` : (active ? key : `-${key}`); state.page = 0; refresh(); } },
      label, arrow));
    })));

  const row = (t) => {
    const box = can("operate") ? h("td", { class: "check" }, h("input", { type: "checkbox", "aria-label": `Select task ${t.id}`,
      checked: selected.has(t.id), dataset: { id: t.id },
      onchange: (e) => { if (e.target.checked) selected.add(t.id); else selected.delete(t.id); drawBulk(); } })) : null;
    return h("tr", { dataset: { taskId: t.id } }, box,
      h("td", { class: "num" }, link(`/ui/tasks/${t.id}`, `#${t.id}`)),
      h("td", { class: "ellipsis" }, t.task_id ?? "–"), h("td", {}, t.type), h("td", { class: "status" }, badge(t.status)),
      h("td", {}, progress(t.frames_done, t.frames_total)), h("td", { class: "num" }, t.priority), h("td", {}, t.pool),
      h("td", {}, when(t.created_at)), h("td", {}, when(t.started_at)), h("td", {}, when(t.finished_at)));
  };

  const bulkDo = (label, fn) => act(label, async () => {
    const ids = [...selected];
    const failures = [];
    for (const id of ids) {
      try { await fn(id); } catch (error) { failures.push(`#${id}: ${error.message}`); }
    }
    if (failures.length) throw new Error(failures.join("; "));
  });

  const drawBulk = () => replace(bulk, h("span", { class: "muted" }, `${selected.size} selected`),
    h("button", { type: "button", id: "bulk-pause", disabled: !selected.size, onclick: () => bulkDo(`Pause sent for ${selected.size} tasks`, (id) => api(`/tasks/${id}`, { method: "PATCH", body: { status: "paused" } })) }, "Pause"),
    h("button", { type: "button", id: "bulk-resume", disabled: !selected.size, onclick: () => bulkDo(`Resume sent for ${selected.size} tasks`, (id) => api(`/tasks/${id}`, { method: "PATCH", body: { status: "queued" } })) }, "Resume"),
    h("button", { type: "button", class: "danger", id: "bulk-cancel", disabled: !selected.size,
      onclick: () => { if (confirm(`Cancel ${selected.size} tasks? Their running chunks are killed.`)) bulkDo(`Cancel sent for ${selected.size} tasks`, (id) => api(`/tasks/${id}`, { method: "DELETE" })); } }, "Cancel"));

  async function refresh() {
    setUrl();
    const q = new URLSearchParams({ limit: PAGE, offset: state.page * PAGE, sort: state.sort });
    for (const key of ["status", "type", "q"]) if (state[key]) q.set(key, state[key]);
    const page = await api(`/tasks?${q}`);
    drawHead();
    replace(body, page.tasks.length ? page.tasks.map(row)
      : h("tr", {}, h("td", { colspan: COLUMNS.length + 1, class: "muted empty" }, "No task matches.")));
    const first = page.total ? page.offset + 1 : 0;
    const last = page.offset + page.tasks.length;
    replace(pager,
      h("button", { type: "button", id: "prev", disabled: state.page === 0, onclick: () => { state.page -= 1; refresh(); } }, "← Newer"),
      h("span", { id: "page-info" }, `${number(first)}–${number(last)} of ${number(page.total)}`),
      h("button", { type: "button", id: "next", disabled: last >= page.total, onclick: () => { state.page += 1; refresh(); } }, "Older →"));
  }

  const search = h("input", { id: "search", type: "search", placeholder: "task id or client task_id", value: state.q });
  const filters = h("form", { class: "filters", id: "filters" },
    h("label", { class: "field grow" }, h("span", {}, "Search"), search),
    select("status-filter", "Status", [["", "any status"], ...STATUSES.map((s) => [s, s])], state.status),
    select("type-filter", "Type", [["", "any type"]], state.type),
    h("button", { type: "submit" }, "Apply"));
  filters.addEventListener("submit", (e) => { e.preventDefault(); state.q = search.value.trim(); state.page = 0; refresh(); });
  filters.addEventListener("change", (e) => {
    if (e.target.id === "status-filter") state.status = e.target.value;
    else if (e.target.id === "type-filter") state.type = e.target.value;
    else return;
    state.page = 0;
    refresh();
  });
  taskTypes().then((types) => {
    const sel = filters.querySelector("#type-filter");
    for (const t of types) sel.append(h("option", { value: t, selected: t === state.type }, t));
  }).catch(() => {});

  replace(root, h("div", { class: "page-head" }, h("h1", {}, "Tasks")),
    h("section", { class: "card" }, filters, bulk, h("div", { class: "scroll" }, h("table", { class: "grid", id: "tasks" }, head, body)), pager));
  drawBulk();
  refresh().catch((error) => replace(body, h("tr", {}, h("td", { class: "form-error" }, error.message))));
  return follow((c) => c.type === "task" || c.type === "chunk", refresh, 700);
}
