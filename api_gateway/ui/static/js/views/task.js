// Task page: settings, actions, chunk grid, the selected chunk's attempts and live log, preview, blocklist.
import { api, can } from "../api.js";
import { badge, duration, h, link, progress, replace, section, table, when } from "../dom.js";
import { act } from "../flash.js";
import { follow } from "../live.js";

const FINAL = ["completed", "failed", "canceled"];

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== undefined).map(([k, v]) =>
    [h("dt", {}, k), h("dd", {}, v === null || v === "" ? "–" : v)]));
}

function frameRange(c) {
  if (c.frame_start === null) return "–";
  return c.frame_start === c.frame_end ? `${c.frame_start}` : `${c.frame_start}–${c.frame_end}`;
}

function actions(task, id) {
  if (!can("operate")) return null;
  const final = FINAL.includes(task.status);
  const priority = h("input", { id: "priority", type: "number", min: 0, max: 100, value: String(task.priority), disabled: final });
  const patch = (label, body) => act(label, () => api(`/tasks/${id}`, { method: "PATCH", body }));
  return h("div", { class: "actions", id: "task-actions" },
    h("button", { type: "button", id: "pause", disabled: final || task.status === "paused", onclick: () => patch("Pause sent", { status: "paused" }) }, "Pause"),
    h("button", { type: "button", id: "resume", disabled: task.status !== "paused", onclick: () => patch("Resume sent", { status: "queued" }) }, "Resume"),
    h("button", { type: "button", class: "danger", id: "cancel", disabled: final,
      onclick: () => { if (confirm(`Cancel task ${id}? Its running chunks are killed.`)) act("Cancel sent", () => api(`/tasks/${id}`, { method: "DELETE" })); } }, "Cancel"),
    h("button", { type: "button", id: "retry", disabled: task.status === "completed" || task.status === "canceled",
      onclick: () => act("Retry of the failed chunks sent", () => api(`/tasks/${id}/retry`, { method: "POST" })) }, "Retry failed chunks"),
    h("form", { class: "inline", id: "priority-form", onsubmit: (e) => { e.preventDefault(); patch("Priority change sent", { priority: Number(priority.value) }); } },
      h("label", { for: "priority" }, "Priority"), priority, h("button", { type: "submit", disabled: final }, "Set")));
}

function chunkTile(c, selectedId, choose) {
  const worker = c.worker ? ` · ${c.worker}` : "";
  return h("button", { type: "button", class: `chunk c-${c.status}${c.id === selectedId ? " selected" : ""}`,
    title: `chunk ${c.index}: frames ${frameRange(c)}, ${c.status}, ${c.attempts} attempts${worker}`,
    dataset: { chunkId: c.id, status: c.status }, onclick: () => choose(c.id) },
  h("span", { class: "frames" }, frameRange(c)),
  h("span", { class: "meta" }, `×${c.attempts}${worker}`));
}

function chunkDetail(c) {
  const attempts = c.attempts_history.length === 0 ? h("p", { class: "muted" }, "Not run yet.")
    : table(["#", "Worker", "Outcome", "Started", "Duration", "Exit", "Reason"], c.attempts_history.map((a) => h("tr", {},
      h("td", { class: "num" }, a.number), h("td", {}, a.worker ?? "–"), h("td", {}, badge(a.outcome)),
      h("td", {}, when(a.started_at)), h("td", {}, duration(a.started_at, a.finished_at)),
      h("td", { class: "num" }, a.exit_code ?? "–"), h("td", { class: "reason" }, a.reason || "–"))));
  const log = h("pre", { class: "log", id: "chunk-log" }, c.log_tail || "(no output yet)");
  return h("div", { class: "chunk-detail", id: "chunk-detail", dataset: { chunkId: c.id } },
    h("h3", {}, `Chunk ${c.index} · frames ${frameRange(c)} `, badge(c.status),
      c.status === "running" ? h("span", { class: "following" }, "following live") : null),
    facts([["Command", c.command], ["Worker", c.worker], ["Attempts", c.attempts], ["Failures", c.failures],
      ["Frames done", `${c.frames_done}/${c.frame_count}`], ["Started", when(c.started_at)],
      ["Finished", when(c.finished_at)], ["Error", c.error], ...(c.step !== undefined ? [["Step", c.step]] : [])]),
    h("h4", {}, "Attempts"), attempts, h("h4", {}, "Log tail"), log);
}

export function taskView(root, [idText]) {
  const id = Number(idText);
  document.title = `Task ${id} · Corral`;
  let chunks = [];
  let selectedChunk = null;
  let previewVersion = 0;
  const head = h("div", { class: "page-head" });
  const settings = h("div", { id: "task-settings" });
  const grid = h("div", { class: "chunks", id: "chunk-grid" });
  const detail = h("div", { id: "chunk-detail-box" });
  const blocklist = h("div", { id: "blocklist" });
  const preview = h("img", { id: "preview", alt: `Newest frame of task ${id}` });
  const previewNote = h("p", { class: "muted", id: "preview-note" }, "No frame written yet.");
  preview.addEventListener("load", () => { preview.hidden = false; previewNote.hidden = true; });
  preview.addEventListener("error", () => { preview.hidden = true; previewNote.hidden = false; });
  preview.hidden = true;

  const choose = (chunkId) => { selectedChunk = chunkId; drawGrid(); refreshChunk(); };
  const drawGrid = () => replace(grid, chunks.length ? chunks.map((c) => chunkTile(c, selectedChunk, choose))
    : h("p", { class: "muted" }, "Not compiled into chunks yet."));

  async function refreshTask() {
    const task = await api(`/tasks/${id}`);
    replace(head, h("h1", {}, `Task #${task.id}`, task.task_id ? h("span", { class: "subtle" }, ` ${task.task_id}`) : null),
      badge(task.status), progress(task.frames_done, task.frames_total), actions(task, id));
    const byStatus = Object.entries(task.chunks_by_status).map(([s, n]) => `${n} ${s}`).join(", ") || "none";
    replace(settings, task.waiting_reason ? h("p", { class: "waiting", id: "waiting-reason" }, "Waiting: ", task.waiting_reason) : null,
      task.error ? h("p", { class: "form-error", id: "task-error" }, task.error) : null,
      facts([["Type", task.type], ["Parser", task.parser], ["Pool", task.pool], ["Priority", task.priority],
        ["Frames", `${task.frame_start}–${task.frame_end}`], ["Current frame", task.frame_current], ["Format", task.format],
        ["Chunks", `${task.chunks_total} (${byStatus})`], ["Max retries", task.max_retries],
        ["Stall timeout", task.stall_timeout ? `${task.stall_timeout} s` : "off"], ["Blocklist after", `${task.blocklist_threshold} failures`],
        ["Created", when(task.created_at)], ["Started", when(task.started_at)], ["Finished", when(task.finished_at)],
        ["Last worker", task.worker_id ? link(`/ui/workers/${task.worker_id}`, `#${task.worker_id}`) : null]]),
      h("details", {}, h("summary", {}, "Settings (JSON)"), h("pre", { class: "json" }, JSON.stringify(task.settings, null, 2))));
    drawBlocklist(task.blocklist);
  }

  function drawBlocklist(entries) {
    const clear = can("operate") && entries.length ? h("button", { type: "button", id: "clear-blocklist",
      onclick: () => act("Blocklist clear sent", () => api(`/tasks/${id}/blocklist`, { method: "DELETE" })) }, "Clear blocklist") : null;
    replace(blocklist, entries.length === 0 ? h("p", { class: "muted" }, "No worker has failed this task.")
      : table(["Worker", "Failures", "Blocked"], entries.map((b) => h("tr", {},
        h("td", {}, link(`/ui/workers/${b.worker_id}`, b.worker)), h("td", { class: "num" }, b.failures),
        h("td", {}, b.blocked ? `since ${when(b.blocked_at)}` : "no")))), clear);
  }

  async function refreshChunks() {
    chunks = (await api(`/tasks/${id}/chunks`)).chunks;
    if (selectedChunk === null && chunks.length) {
      const running = chunks.find((c) => c.status === "running");
      selectedChunk = (running || chunks[0]).id;
    }
    drawGrid();
    await refreshChunk();
    const v = Date.now();
    if (chunks.some((c) => c.files && c.files.length) && v - previewVersion > 1500) {
      previewVersion = v;
      preview.src = `/tasks/${id}/preview?v=${v}`;
    }
  }

  async function refreshChunk() {
    if (selectedChunk === null) return replace(detail, h("p", { class: "muted" }, "Select a chunk."));
    const chunk = await api(`/tasks/${id}/chunks/${selectedChunk}`);
    const old = detail.querySelector("#chunk-log");
    const atEnd = !old || old.scrollTop + old.clientHeight >= old.scrollHeight - 4;
    replace(detail, chunkDetail(chunk));
    const log = detail.querySelector("#chunk-log");
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  replace(root, head,
    h("div", { class: "columns wide-left" },
      h("div", {}, section("Chunks", h("p", { class: "legend" }, ["pending", "released", "running", "completed", "failed", "canceled", "blocked"]
        .map((s) => h("span", { class: `key c-${s}` }, s))), grid), section("Chunk", detail)),
      h("div", {}, section("Newest frame", preview, previewNote), section("Settings", settings), section("Blocklist", blocklist))));

  const all = () => Promise.all([refreshTask(), refreshChunks()]);
  all().catch((error) => replace(head, h("h1", {}, `Task #${id}`), h("p", { class: "form-error" }, error.message)));
  const stops = [
    follow((c) => c.task === id && c.type === "task", refreshTask, 300),
    follow((c) => c.task === id && c.type === "chunk", () => Promise.all([refreshTask(), refreshChunks()]), 400),
  ];
  return () => stops.forEach((stop) => stop());
}


