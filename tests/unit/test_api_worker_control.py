"""``PATCH /workers/{id}`` operator control: pools, actions, sleep schedules; and how GET shows them."""
from __future__ import annotations

import urllib.parse

import pytest

from common.messages import WorkerUpdate
from common.models import Worker, database_proxy

SCHEDULE = {"days": ["mon", "tue"], "start": "09:00", "end": "19:00", "tz": "Europe/Amsterdam"}


def add_worker(**fields) -> Worker:
    with database_proxy.connection_context():
        return Worker.create(**{"name": "ws-1", "hostname": "ws-1", **fields})


def patch(client, worker, body):
    return client.simulate_patch(f"/workers/{worker.id}", json=body)


@pytest.mark.parametrize("body, expected", [
    ({"pools": ["gpu", "default"]}, {"pools": ["gpu", "default"]}),
    ({"pools": None}, {"pools_reset": True}),
    ({"action": "stop"}, {"action": "stop"}),
    ({"action": "stop_now"}, {"action": "stop_now"}),
    ({"action": "restart"}, {"action": "restart"}),
    ({"action": None}, {"action_clear": True}),
    ({"sleep_schedule": SCHEDULE}, {"sleep_schedule": SCHEDULE}),
    ({"sleep_schedule": {**SCHEDULE, "days": ["TUE", "mon"]}}, {"sleep_schedule": SCHEDULE}),
    ({"sleep_schedule": None}, {"sleep_schedule_clear": True}),
    ({"status": "disabled", "pools": ["cpu"], "action": "restart"},
     {"status": "disabled", "pools": ["cpu"], "action": "restart"}),
])
def test_each_control_field_becomes_one_worker_update_for_the_dispatcher(client, publisher, body, expected):
    worker = add_worker(current_task=4)

    result = patch(client, worker, body)

    assert result.status_code == 200, result.text
    assert result.json == {"task_id": 4}
    assert publisher.sent == [WorkerUpdate(worker_id=worker.id, **expected)]


@pytest.mark.parametrize("body, field", [
    ({"pools": "gpu"}, "pools"),
    ({"pools": []}, "pools"),
    ({"pools": [f"p{i}" for i in range(17)]}, "pools"),
    ({"pools": ["gpu", "GPU"]}, "pools[1]"),
    ({"pools": ["gpu", "two words"]}, "pools[1]"),
    ({"pools": ["gpu", 7]}, "pools[1]"),
    ({"pools": ["gpu", "gpu"]}, "pools[1]"),
    ({"action": "reboot"}, "action"),
    ({"action": "stop-now"}, "action"),
    ({"action": 1}, "action"),
    ({"sleep_schedule": "nights"}, "sleep_schedule"),
    ({"sleep_schedule": {**SCHEDULE, "start": "9am"}}, "sleep_schedule.start"),
    ({"sleep_schedule": {**SCHEDULE, "end": "25:00"}}, "sleep_schedule.end"),
    ({"sleep_schedule": {**SCHEDULE, "tz": "Europe/Atlantis"}}, "sleep_schedule.tz"),
    ({"sleep_schedule": {**SCHEDULE, "days": ["mon", "someday"]}}, "sleep_schedule.days[1]"),
    ({"sleep_schedule": {**SCHEDULE, "hours": 3}}, "sleep_schedule.hours"),
    ({"status": "sleeping"}, "status"),
    ({"pool": ["gpu"]}, "pool"),
    ({}, "body"),
])
def test_a_bad_control_field_is_refused_with_400_naming_it_and_nothing_is_sent(client, publisher, body,
                                                                              field):
    worker = add_worker()

    result = patch(client, worker, body)

    assert result.status_code == 400, result.text
    assert result.json["error"]["field"] == field
    assert result.json["error"]["message"].startswith(f"{field}: ")
    assert publisher.sent == []


def test_a_form_body_may_only_carry_the_legacy_status(client, publisher):
    worker = add_worker()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    result = client.simulate_patch(f"/workers/{worker.id}", body=urllib.parse.urlencode({"action": "stop"}),
                                   headers=form)
    assert result.status_code == 400 and result.json["error"]["field"] == "action"
    ok = client.simulate_patch(f"/workers/{worker.id}", body="status=disabled", headers=form)
    assert ok.status_code == 200
    assert publisher.sent == [WorkerUpdate(worker_id=worker.id, status="disabled")]


def test_the_list_and_the_details_show_pools_pending_action_and_schedule(client):
    worker = add_worker(pools=["gpu"], operator_pools=["gpu"], agent_pools=["default"],
                        pending_action="restart", sleep_schedule=SCHEDULE, asleep=True)
    add_worker(name="plain", hostname="plain", pools=["default"])

    listed = client.simulate_get("/workers").json
    detail = client.simulate_get(f"/workers/{worker.id}").json

    for shown in (listed["ws-1"], detail):
        assert shown["pools"] == ["gpu"] and shown["pools_set_by"] == "operator"
        assert shown["pending_action"] == "restart"
        assert shown["sleep_schedule"] == SCHEDULE and shown["asleep"] is True
    plain = listed["plain"]
    assert (plain["pools_set_by"], plain["pending_action"], plain["sleep_schedule"], plain["asleep"]) == (
        "agent", None, None, False)
