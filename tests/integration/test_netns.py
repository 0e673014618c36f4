"""Real network partitions: render hosts in network namespaces, cut off and put on a bad link.

The root namespace is the manager host: a RabbitMQ node of its own (corral-net@localhost,
AMQP 5721, distribution 25721) listening on the LAN bridge's address, the SQLite
database, the gateway and the dispatcher. Each render host is a namespace with its
own address on the bridge, running a real agent process.
"""
from __future__ import annotations

import time

import pytest

from common.db import open_database
from common.models import Attempt, Chunk, Worker, database_proxy
from tests.conftest import farm_environment, missing, wait_for
from tests.integration.farmproc import Farm, sleep_settings
from tests.integration.logtimes import first_after
from tests.netns import Lan, netns_problem
from tests.rabbitnodes import RabbitNode, rabbitmq_available

pytestmark = pytest.mark.integration

BROKER = ("corral-net", 5721, 25721)
RENDER_HOSTS = 2
# The agents' AMQP heartbeat: a partitioned agent notices within about twice this.
AMQP_HEARTBEAT_S = "2"


@pytest.fixture(scope="module")
def lan():
    problem = netns_problem()
    if problem:
        missing(problem)
    network = Lan(RENDER_HOSTS).open()
    yield network
    network.close()


@pytest.fixture(scope="module")
def lan_broker(lan, tmp_path_factory):
    problem = rabbitmq_available()
    if problem:
        missing(f"RabbitMQ server binaries: {problem}")
    base = tmp_path_factory.mktemp("rabbit-net")
    cookie = base / ".erlang.cookie"
    cookie.write_text("CORRALNETTESTCOOKIE")
    cookie.chmod(0o400)
    node = RabbitNode(base, *BROKER, listen=(lan.manager_address,))
    node.start()
    try:
        node.wait_started()
    except BaseException:
        node.kill()
        raise
    yield node
    node.kill()


@pytest.fixture
def lan_farm(lan, lan_broker, namespace, sqlite_url, tmp_path):
    env = farm_environment(lan_broker.url(), namespace, sqlite_url, tmp_path)
    env["CORRAL_AMQP_HEARTBEAT"] = AMQP_HEARTBEAT_S
    logdir = tmp_path / "logs"
    logdir.mkdir()
    farm = Farm(env, logdir)
    farm.gateway()
    farm.dispatcher()
    names = []
    for i, host in enumerate(lan.hosts, start=1):
        names.append(f"h{i}")
        farm.agent(f"h{i}", prefix=tuple(host.command()))
    farm.wait_online(names)
    yield farm, dict(zip(names, lan.hosts, strict=True))
    farm.close()
    for host in lan.hosts:
        lan.heal(host)
        lan.clear(host)


def running_agent(env, task_id) -> str | None:
    open_database(env["CORRAL_DATABASE_URL"])
    with database_proxy.connection_context():
        row = (Chunk.select(Chunk, Worker).join(Worker)
               .where(Chunk.task == task_id, Chunk.status == "running").first())
        return row.worker.name if row else None


def attempts(env, task_id) -> list[tuple[int, str, str]]:
    """(chunk index, worker name, outcome) of every attempt of the task."""
    open_database(env["CORRAL_DATABASE_URL"])
    with database_proxy.connection_context():
        rows = (Attempt.select(Attempt, Chunk, Worker).join(Chunk).switch(Attempt).join(Worker)
                .where(Chunk.task == task_id).order_by(Attempt.id))
        return [(row.chunk.index, row.worker.name, row.outcome) for row in rows]


def counted_frames(env, task_id) -> list[int]:
    open_database(env["CORRAL_DATABASE_URL"])
    with database_proxy.connection_context():
        return sorted(f for row in Chunk.select().where(Chunk.task == task_id).dicts()
                      for f in row["frames_done"])


def test_every_render_host_reports_its_own_address(lan_farm):
    farm, hosts = lan_farm
    workers = farm.get("/workers")
    assert {name: workers[name]["ip_address"] for name in hosts} == \
        {name: host.address for name, host in hosts.items()}


def test_a_render_host_cut_off_mid_chunk_loses_it_to_another_host_and_is_told_its_lease_is_dead(
        lan, lan_farm):
    farm, hosts = lan_farm
    # Long enough that the cut-off agent still runs it when it is back and told to abort.
    task = farm.submit("sleep", sleep_settings(1, 8, 8, 2.5))
    victim = wait_for(lambda: running_agent(farm.env, task["id"]), timeout=20, what="the chunk to start")
    other = next(name for name in hosts if name != victim)
    victim_log = farm.logdir / f"agent-{victim}.log"

    cut_at = time.time()
    lan.cut(hosts[victim])
    try:
        wait_for(lambda: running_agent(farm.env, task["id"]) == other, timeout=20,
                 what=f"the chunk to move to {other}")
        assert farm.get("/workers")[victim]["connection"] == "offline"
        moved_s = time.time() - cut_at
        # Long enough for the AMQP heartbeats to give up on both sides: a real reconnect follows.
        wait_for(lambda: first_after(victim_log, "broker connection lost", cut_at), timeout=20,
                 what=f"{victim} to notice the partition")
    finally:
        healed_at = time.time()
        lan.heal(hosts[victim])
    reconnected = wait_for(lambda: first_after(victim_log, f"agent {victim} reconnected to", healed_at),
                           timeout=40, what=f"{victim} to reconnect\n{farm.logs()}")
    told = wait_for(lambda: first_after(victim_log, "aborting chunk", healed_at), timeout=20,
                    what=f"{victim} to be told its lease is dead\n{farm.logs()}")
    print(f"\npartition: chunk moved {moved_s:.1f}s after the cut; after healing, {victim} reconnected "
          f"in {reconnected - healed_at:.1f}s and was told to abort in {told - healed_at:.1f}s")

    done = farm.wait_task(task["id"], timeout=60)
    assert done["frames_done"] == 8
    assert counted_frames(farm.env, task["id"]) == list(range(1, 9))
    history = attempts(farm.env, task["id"])
    # The victim's attempt was lost, then closed by its own report after the abort.
    assert [(worker, outcome) for _, worker, outcome in history] in (
        [(victim, "lost"), (other, "completed")], [(victim, "canceled"), (other, "completed")]), history
    wait_for(lambda: farm.get("/workers")[victim]["connection"] == "online", timeout=20,
             what=f"{victim} online again")


def test_a_farm_on_slow_lossy_links_finishes_with_nothing_lost(lan, lan_farm):
    farm, hosts = lan_farm
    how = [lan.impair(host, delay_ms=80, loss_percent=10, rate_kbit=512) for host in hosts.values()][0]
    loss = lan.ping_loss(next(iter(hosts.values())))
    assert loss > 0, f"the link should lose packets ({how})"
    started = time.monotonic()
    task = farm.submit("sleep", sleep_settings(1, 16, 1, 0.1))
    done = farm.wait_task(task["id"], timeout=150)
    print(f"\nlossy links ({how}; ping loss {loss:.0f}%): 16 chunks in {time.monotonic() - started:.1f}s")
    assert done["frames_done"] == 16
    assert counted_frames(farm.env, task["id"]) == list(range(1, 17))
    history = attempts(farm.env, task["id"])
    completed = sorted(index for index, _, outcome in history if outcome == "completed")
    assert completed == list(range(16)), history
    assert all(farm.get("/workers")[name]["connection"] == "online" for name in hosts)
