"""The web UI in a real browser (Debian's Chromium through Playwright) against a real farm.

One farm (gunicorn gateway, dispatcher, two agent processes on the real broker)
and one browser serve every test of this module. Each page is saved as a
screenshot at a laptop size and at 4K (``$CORRAL_SCREENSHOTS``, default
``var/screenshots``).
"""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest
import requests

from tests.conftest import wait_for
from tests.integration.farmproc import CORRAL, Farm, sleep_settings

pytestmark = pytest.mark.integration
EVIL_HOSTNAME = "<img src=x onerror=alert(1)>"
SIZES = {"laptop": (1366, 768), "4k": (3840, 2160)}
UI_WAIT_MS = 15_000


@pytest.fixture(scope="module")
def live_farm(broker_url, tmp_path_factory):
    from tests.conftest import delete_namespace_queues

    root = tmp_path_factory.mktemp("dashboard")
    namespace = f"d{uuid.uuid4().hex[:10]}"
    env = dict(os.environ, CORRAL_BROKER_URL=broker_url, CORRAL_NAMESPACE=namespace,
               CORRAL_DATABASE_URL=f"sqlite:///{root / 'corral.db'}", CORRAL_DATA_DIR=str(root / "var"),
               CORRAL_HEARTBEAT_INTERVAL="0.5", CORRAL_AGENT_TIMEOUT="3", CORRAL_TICK_INTERVAL="0.2",
               CORRAL_AGENT_SECRET=f"secret-{namespace}", CORRAL_API_CACHE="0", PYTHONUNBUFFERED="1")
    (root / "logs").mkdir()
    farm = Farm(env, root / "logs")
    farm.gateway()
    farm.dispatcher()
    farm.agent("ui-a")
    farm.agent("ui-b")
    farm.wait_online(["ui-a", "ui-b"])
    yield farm
    farm.close()
    delete_namespace_queues(broker_url, namespace)


def new_page(browser, farm, size="laptop"):
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=farm.api)
    page = context.new_page()
    page.set_default_timeout(UI_WAIT_MS)
    page.errors = []
    page.dialog_answers = []  # True: accept the next dialog, False: dismiss it; none expected: an error
    page.dialogs = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: _answer(page, dialog))
    return page


def _answer(page, dialog):
    page.dialogs.append(dialog.message)
    if not page.dialog_answers:
        page.errors.append(f"unexpected dialog: {dialog.message}")
        dialog.dismiss()
    elif page.dialog_answers.pop(0):
        dialog.accept()
    else:
        dialog.dismiss()


def log_in(page, token):
    page.goto("/ui/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#task-states")


@pytest.fixture(scope="module")
def admin_page(browser, live_farm):
    page = new_page(browser, live_farm)
    log_in(page, live_farm.token)
    yield page
    page.context.close()


def api(farm, method, path, **kwargs):
    response = requests.request(method, f"{farm.api}{path}", headers=farm.headers, timeout=10, **kwargs)
    assert response.status_code < 400, response.text
    return response.json() if response.content else None


def shoot(page, screenshots, name):
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=False)


def test_the_front_page_redirects_to_the_dashboard(live_farm):
    response = requests.get(f"{live_farm.api}/", allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert response.headers["Location"] == "/ui/"


def test_the_login_form_refuses_a_wrong_token_and_a_right_one_starts_a_session(
        browser, live_farm, screenshots):
    page = new_page(browser, live_farm)
    page.goto("/ui/tasks")
    token_field = page.get_by_label("API token")
    assert token_field.is_visible()
    token_field.fill("corral_not-a-real-token")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#login-error:has-text('not valid')")
    shoot(page, screenshots, "login-laptop")
    token_field.fill(live_farm.token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#tasks")  # back on the page that was asked for
    cookie = next(c for c in page.context.cookies() if c["name"] == "corral_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert live_farm.token not in page.url
    page.get_by_role("button", name="Log out").click()
    page.wait_for_selector("#login-form")
    status = page.evaluate("fetch('/session').then(r => r.status)")
    assert status == 401
    page.context.close()


def test_a_login_link_works_once_and_keeps_its_code_out_of_the_address(browser, live_farm):
    made = subprocess.run([*CORRAL, "login-link", "--url", live_farm.api], env=live_farm.env,
                          capture_output=True, text=True, timeout=60, check=True)
    link = made.stdout.strip()
    assert "#code=" in link
    page = new_page(browser, live_farm)
    page.goto(link)
    page.wait_for_selector("#task-states")
    assert "code" not in page.url
    page.context.close()
    again = new_page(browser, live_farm)
    again.goto(link)
    again.wait_for_selector("#login-error:has-text('not valid any more')")
    again.context.close()


def test_a_task_submitted_over_the_api_appears_and_climbs_to_completed_without_a_reload(
        admin_page, live_farm, screenshots):
    page = admin_page
    page.click("a[data-page=tasks]")
    page.wait_for_selector("#tasks")
    page.evaluate("window.notReloaded = true")
    task = live_farm.submit("sleep", sleep_settings(1, 12, 3, 0.3), task_id=f"climb-{uuid.uuid4().hex[:6]}")
    row = f"#tasks-body tr[data-task-id='{task['id']}']"
    page.wait_for_selector(row)
    page.wait_for_selector(f"{row} .badge:has-text('completed')", timeout=60_000)
    assert page.inner_text(f"{row} .progress .nums") == "12/12"
    assert page.evaluate("window.notReloaded") is True
    assert live_farm.get(f"/tasks/{task['id']}")["status"] == "completed"
    for size in SIZES:
        page.set_viewport_size(dict(zip(("width", "height"), SIZES[size], strict=True)))
        shoot(page, screenshots, f"tasks-{size}")
        page.goto("/ui/")
        page.wait_for_selector("#task-states")
        shoot(page, screenshots, f"overview-{size}")
        page.goto(f"/ui/tasks/{task['id']}")
        page.wait_for_selector("#chunk-detail")
        shoot(page, screenshots, f"task-{size}")
        page.goto("/ui/tasks")
        page.wait_for_selector("#tasks-body tr")
    page.set_viewport_size({"width": 1366, "height": 768})
    assert not page.errors


def test_pause_and_resume_from_the_task_page_and_the_api_agrees(admin_page, live_farm):
    page = admin_page
    task = live_farm.submit("sleep", sleep_settings(1, 40, 2, 0.5))
    page.goto(f"/ui/tasks/{task['id']}")
    page.wait_for_selector("#pause:not([disabled])")
    page.click("#pause")
    wait_for(lambda: live_farm.get(f"/tasks/{task['id']}")["status"] == "paused", 20, what="paused")
    page.wait_for_selector(".page-head .badge:has-text('paused')")
    page.click("#resume")
    wait_for(lambda: live_farm.get(f"/tasks/{task['id']}")["status"] in ("queued", "rendering"), 20,
             what="resumed")
    page.wait_for_selector(".page-head .badge:text-matches('queued|rendering')")
    api(live_farm, "DELETE", f"/tasks/{task['id']}")


def test_cancel_asks_for_confirmation_and_cancels(browser, live_farm):
    page = new_page(browser, live_farm)
    log_in(page, live_farm.token)
    task = live_farm.submit("sleep", sleep_settings(1, 40, 2, 0.5))
    page.goto(f"/ui/tasks/{task['id']}")
    page.wait_for_selector("#cancel:not([disabled])")
    page.dialog_answers.append(False)
    page.click("#cancel")
    wait_for(lambda: page.dialogs, 5, what="the confirmation")
    assert "Cancel task" in page.dialogs[0]
    assert live_farm.get(f"/tasks/{task['id']}")["status"] != "canceled"
    page.dialog_answers.append(True)
    page.click("#cancel")
    wait_for(lambda: live_farm.get(f"/tasks/{task['id']}")["status"] == "canceled", 20, what="canceled")
    page.wait_for_selector(".page-head .badge:has-text('canceled')")
    page.context.close()


def test_retry_failed_chunks_runs_them_again(admin_page, live_farm):
    page = admin_page
    task = live_farm.submit("sleep", {**sleep_settings(1, 2, 2, 0.1), "exit_code": 3}, max_retries=0)
    live_farm.wait_task(task["id"], ("failed",))
    page.goto(f"/ui/tasks/{task['id']}")
    page.wait_for_selector("#retry:not([disabled])")
    page.click("#retry")

    def attempts():
        return len(live_farm.get(f"/tasks/{task['id']}/chunks")["chunks"][0]["attempts_history"])
    wait_for(lambda: attempts() >= 2, 30, what="a second attempt after the retry")
    page.wait_for_selector("#flash.ok")


def test_disable_and_enable_a_worker_from_the_workers_page(admin_page, live_farm, screenshots):
    page = admin_page
    page.goto("/ui/workers")
    button = "#workers-body tr[data-worker='ui-a'] button"
    page.wait_for_selector(f"{button}:has-text('Disable')")
    shoot(page, screenshots, "workers-laptop")
    page.click(button)
    wait_for(lambda: live_farm.get("/workers")["ui-a"]["status"] == "disabled", 20, what="disabled")
    page.wait_for_selector(f"{button}:has-text('Enable')")
    page.click(button)
    wait_for(lambda: live_farm.get("/workers")["ui-a"]["status"] == "enabled", 20, what="enabled")
    worker_id = live_farm.get("/workers")["ui-a"]["id"]
    for size in SIZES:
        page.set_viewport_size(dict(zip(("width", "height"), SIZES[size], strict=True)))
        page.goto(f"/ui/workers/{worker_id}")
        page.wait_for_selector("#readings .tile")
        shoot(page, screenshots, f"worker-{size}")
        page.goto("/ui/workers")
        page.wait_for_selector("#workers-body tr")
        shoot(page, screenshots, f"workers-{size}")
    page.set_viewport_size({"width": 1366, "height": 768})


def test_a_hostile_hostname_is_shown_as_text(admin_page, live_farm):
    page = admin_page
    api(live_farm, "POST", "/workers",
        json={"name": "evil-node", "hostname": EVIL_HOSTNAME, "system": "Linux"})
    page.goto("/ui/workers")
    cell = "#workers-body tr[data-worker='evil-node'] .hostname"
    page.wait_for_selector(cell)
    assert page.inner_text(cell) == EVIL_HOSTNAME
    assert page.locator("#workers img").count() == 0
    worker_id = live_farm.get("/workers")["evil-node"]["id"]
    page.goto(f"/ui/workers/{worker_id}")
    page.wait_for_selector(".hostname")
    assert page.inner_text(".facts .hostname") == EVIL_HOSTNAME
    assert page.locator("main img").count() == 0
    assert not [e for e in page.errors if "dialog" in e]


def test_a_read_session_sees_no_actions_and_the_server_refuses_them(browser, live_farm):
    token = api(live_farm, "POST", "/tokens", json={"name": "viewer", "scopes": ["read"]})["token"]
    task = live_farm.submit("sleep", sleep_settings(1, 4, 2, 0.2))
    page = new_page(browser, live_farm)
    log_in(page, token)
    page.goto(f"/ui/tasks/{task['id']}")
    page.wait_for_selector("#task-settings dl")
    assert page.locator("#pause, #resume, #cancel, #retry, #priority").count() == 0
    page.goto("/ui/workers")
    page.wait_for_selector("#workers-body tr")
    assert page.locator("#workers-body button").count() == 0
    refused = page.evaluate("""async (id) => {
        const me = await (await fetch('/session')).json();
        const r = await fetch(`/tasks/${id}`, {method: 'DELETE', headers: {'X-CSRF-Token': me.csrf_token}});
        return [r.status, (await r.json()).error.message];
    }""", task["id"])
    assert refused[0] == 403 and "operate" in refused[1]
    page.context.close()


def test_a_cookie_without_its_csrf_token_cannot_change_anything(admin_page, live_farm):
    task = live_farm.submit("sleep", sleep_settings(1, 2, 2, 0.1))
    status = admin_page.evaluate("id => fetch(`/tasks/${id}`, {method: 'DELETE'}).then(r => r.status)",
                                 task["id"])
    assert status == 403
    assert live_farm.get(f"/tasks/{task['id']}")["status"] != "canceled"


def test_every_page_sends_a_strict_content_security_policy(live_farm):
    for path in ("/ui/", "/ui/tasks", "/ui/tasks/1", "/ui/workers", "/ui/workers/1", "/ui/static/js/app.js"):
        response = requests.get(f"{live_farm.api}{path}", timeout=5)
        assert response.status_code == 200, path
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert requests.get(f"{live_farm.api}/ui/nowhere", timeout=5).status_code == 404
