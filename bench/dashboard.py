"""Rows for the web dashboard: page answer times at 100,000 tasks and 1,000 workers, change-event
latency (dispatcher commit -> ``/events`` client, and API call -> browser), and the dispatcher's
throughput with 50 open ``/events`` streams against none.

The page rows time what each page asks of the gateway (the tasks page: one
sorted, filtered page of ``GET /tasks``; the overview: ``GET /summary``) and,
when Debian's Chromium is installed, the whole page in a real browser from
navigation to the table drawn.
"""
from __future__ import annotations

import json
import random
import shutil
import threading
import time
from pathlib import Path

import requests

from bench import farm
from bench.api_load import seed
from bench.results import Results, percentile
from bench.throughput import run_task

ROW = "dashboard"
LISTENERS = 50
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGE_QUERIES = (("tasks page: newest 50", "/tasks?limit=50&sort=-id"),
                ("tasks page: rendering by priority", "/tasks?status=rendering&sort=-priority&limit=50"),
                ("tasks page: search client id", "/tasks?q=shot-4213&limit=50"),
                ("tasks page: type filter, page 100", "/tasks?type=blender_render&limit=50&offset=5000"),
                ("overview: GET /summary", "/summary"))


def seed_chunks(database_url: str, count: int) -> None:
    """Completed chunks over the last two hours, so the overview's frames-per-hour query has work."""
    from common.db import open_database
    from common.models import Chunk, Task, database_proxy

    open_database(database_url)
    database_proxy.connect(reuse_if_open=True)
    now = time.time()
    rng = random.Random(3)
    task_ids = [t for (t,) in Task.select(Task.id).tuples()]
    rows = [{"task": task_ids[i % len(task_ids)], "index": i // len(task_ids), "command": "blender_render",
             "frames": [[1, 4]], "frame_count": 4, "status": "completed",
             "finished_at": now - rng.random() * 7200} for i in range(count)]
    with database_proxy.atomic():
        for start in range(0, count, 1000):
            Chunk.insert_many(rows[start:start + 1000]).execute()
        database_proxy.execute_sql("UPDATE tasks SET client_task_id = 'shot-' || id")
    database_proxy.close()


def time_get(session: requests.Session, url: str, times: int) -> list[float]:
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        response = session.get(url, timeout=30)
        out.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
    return out


def pages(results: Results, namespace: str, workdir: Path, token: str, workers: int, tasks: int,
          requests_each: int) -> None:
    url = farm.sqlite_url(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seed(url, workers, tasks)
    seed_chunks(url, tasks)
    with farm.Farm(f"{namespace}.dash", url, workdir, token) as f:
        f.gateway(threads=64)
        note = f"{tasks:,} tasks, {workers:,} workers, SQLite, {requests_each} sequential requests"
        for label, path in PAGE_QUERIES:
            time_get(f.session, f"{f.api}{path}", 3)  # warm-up
            latencies = time_get(f.session, f"{f.api}{path}", requests_each)
            key = "dash_" + label.split(":")[0].replace(" ", "_") + f"_{PAGE_QUERIES.index((label, path))}"
            results.add(ROW, f"{key}_p50", f"{label}: p50", percentile(latencies, 50), "ms", note)
            results.add(ROW, f"{key}_p99", f"{label}: p99", percentile(latencies, 99), "ms", note)
        browser_pages(results, f, token)


def _chromium():
    executable = shutil.which("chromium")
    if executable is None:
        return None, None
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    return playwright, playwright.chromium.launch(executable_path=executable, headless=True,
                                                  args=CHROMIUM_ARGS)


def browser_pages(results: Results, f: farm.Farm, token: str) -> None:
    """Navigation to drawn table in Chromium, median of five (the session and scripts are warm)."""
    playwright, browser = _chromium()
    if browser is None:
        return
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 768}, base_url=f.api)
        page.goto("/ui/")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("#task-states")
        for label, path, ready in (("tasks page in Chromium", "/ui/tasks", "#tasks-body tr[data-task-id]"),
                                   ("overview in Chromium", "/ui/", "#task-states .tile")):
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                page.goto(path)
                page.wait_for_selector(ready)
                times.append((time.perf_counter() - t0) * 1000)
            results.add(ROW, f"dash_browser_{path.strip('/').replace('/', '_')}", f"{label}: median",
                        percentile(times, 50), "ms", "navigation -> table drawn, laptop viewport")
    finally:
        browser.close()
        playwright.stop()


class Listener:
    """One ``/events`` client on its own thread; records each change and when it arrived.

    ``parse=False`` only counts events (a cheap client: 50 of them share this machine's two cores
    with the farm they measure).
    """

    def __init__(self, api: str, token: str, query: str = "", parse: bool = True) -> None:
        self.parse = parse
        self.count = 0
        self.received: list[tuple[float, dict]] = []
        self.connected = threading.Event()
        self._response = requests.get(f"{api}/events{query}", headers={"Authorization": f"Bearer {token}"},
                                      stream=True, timeout=(5, 60))
        self._response.raise_for_status()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        if not self.parse:
            self._count()
            return
        try:
            for line in self._response.iter_lines():
                self.connected.set()
                if line.startswith(b"data: "):
                    self.received.append((time.time(), json.loads(line[6:])))
        except (requests.RequestException, AttributeError, ValueError):
            pass

    def _count(self) -> None:
        try:
            for piece in self._response.iter_content(chunk_size=65536):
                self.connected.set()
                self.count += piece.count(b"\ndata: ") + piece.startswith(b"data: ")
        except (requests.RequestException, AttributeError, ValueError):
            pass

    def close(self) -> None:
        self._response.close()


def event_latency(results: Results, f: farm.Farm, token: str, changes: int) -> None:
    task = f.submit("noop", {"frame_start": 1, "frame_end": 1, "chunk_size": 1})
    f.wait_task(task["id"], 60)
    live = f.submit("sleep", {"frame_start": 1, "frame_end": 1, "chunk_size": 1, "seconds_per_frame": 3600})
    listener = Listener(f.api, token, f"?task={live['id']}&type=task")
    listener.connected.wait(10)
    request_to_client = []
    missed = 0
    for i in range(changes):
        before = len(listener.received)
        t0 = time.time()
        response = f.session.patch(f"{f.api}/tasks/{live['id']}", json={"priority": i % 100}, timeout=10)
        response.raise_for_status()
        try:
            farm.wait_for(lambda b=before: len(listener.received) > b, 10, "the change event")
        except TimeoutError:  # a lost change event (best effort by design): counted, not timed
            missed += 1
            continue
        request_to_client.append((listener.received[-1][0] - t0) * 1000)
    commit_to_client = [(at - change["at"]) * 1000 for at, change in listener.received if change.get("at")]
    listener.close()
    note = f"{changes} task.update changes ({missed} events lost), one /events client filtered to the task"
    results.add(ROW, "dash_event_commit_p50", "event latency commit -> /events client: p50",
                percentile(commit_to_client, 50), "ms", note)
    results.add(ROW, "dash_event_commit_p99", "event latency commit -> /events client: p99",
                percentile(commit_to_client, 99), "ms", note)
    results.add(ROW, "dash_event_request_p50", "PATCH -> /events client (via the dispatcher): p50",
                percentile(request_to_client, 50), "ms", note)
    browser_latency(results, f, token, live["id"])
    f.cancel(live["id"])


def browser_latency(results: Results, f: farm.Farm, token: str, task_id: int) -> None:
    """API call -> the task page in Chromium shows the new priority, without a reload."""
    playwright, browser = _chromium()
    if browser is None:
        return
    try:
        page = browser.new_page(base_url=f.api)
        page.goto("/ui/")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("#task-states")
        page.goto(f"/ui/tasks/{task_id}")
        page.wait_for_selector("#priority")
        times = []
        for priority in (11, 12, 13, 14, 15, 16, 17, 18, 19, 20):
            t0 = time.perf_counter()
            f.session.patch(f"{f.api}/tasks/{task_id}", json={"priority": priority}, timeout=10)
            # (wait_for_function would evaluate a string: the page's CSP forbids that, rightly)
            page.wait_for_selector(f"#priority[value='{priority}']", timeout=10_000)
            times.append((time.perf_counter() - t0) * 1000)
        results.add(ROW, "dash_event_browser_p50", "PATCH -> task page in Chromium updated: p50",
                    percentile(times, 50), "ms", "10 priority changes, no reload")
    finally:
        browser.close()
        playwright.stop()


def with_listeners(results: Results, namespace: str, workdir: Path, token: str, n: int,
                   agents: int = 4) -> None:
    with farm.Farm(f"{namespace}.dashtp", farm.sqlite_url(workdir), workdir, token) as f:
        pid = f.dispatcher().pid
        f.gateway(threads=64)
        names = farm.agent_names(agents)
        f.agents(names)
        f.wait_online(names)
        run_task(f, max(50, n // 10), pid)  # warm-up
        quiet, _ = run_task(f, n, pid)
        listeners = [Listener(f.api, token, parse=False) for _ in range(LISTENERS)]
        for listener in listeners:
            listener.connected.wait(10)
        busy, _ = run_task(f, n, pid)
        try:  # every stream sees at least one change per chunk
            farm.wait_for(lambda: sum(x.count for x in listeners) >= LISTENERS * n, 20, "the streams' events")
        except TimeoutError:
            pass  # reported below as the number delivered
        events = sum(listener.count for listener in listeners)
        for listener in listeners:
            listener.close()
        note = f"noop N={n}, chunk 1, K={agents}, SQLite"
        results.add(ROW, "dash_tp_0", "dispatcher throughput, 0 /events listeners", quiet, "chunks/s", note)
        results.add(ROW, "dash_tp_50", f"dispatcher throughput, {LISTENERS} /events listeners", busy,
                    "chunks/s", f"{note}; {events:,} events delivered")
        event_latency(results, f, token, 50)


def run(results: Results, namespace: str, workdir: Path, token: str, workers: int, tasks: int,
        requests_each: int, n: int) -> None:
    pages(results, namespace, workdir / "pages", token, workers, tasks, requests_each)
    with_listeners(results, namespace, workdir / "listeners", token, n)
