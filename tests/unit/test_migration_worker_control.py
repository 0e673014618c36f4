"""The worker-control migration adds its columns to a database made by an older release, once."""
from __future__ import annotations

import sqlite3

from common.db import MIGRATIONS, _m_worker_control, open_and_migrate
from common.models import SchemaVersion, Worker, database_proxy

WORKER_CONTROL = MIGRATIONS.index(_m_worker_control) + 1  # its schema version
NEW_COLUMNS = {"operator_pools", "agent_pools", "pending_action", "sleep_schedule", "asleep"}


def old_release_database(path) -> None:
    """Today's schema without the worker-control columns (as an older release left it), one worker."""
    db = open_and_migrate(f"sqlite:///{path}")
    with database_proxy.connection_context():
        Worker.create(name="old-node", pools=["default"])
    db.close()
    con = sqlite3.connect(path)
    for column in sorted(NEW_COLUMNS):
        con.execute(f"ALTER TABLE workers DROP COLUMN {column}")
    con.execute("DELETE FROM schema_version WHERE version = ?", (WORKER_CONTROL,))
    con.commit()
    con.close()


def columns(db) -> set[str]:
    return {c.name for c in db.get_columns("workers")}


def test_an_old_database_gains_the_columns_and_keeps_its_workers(tmp_path):
    path = tmp_path / "old.db"
    old_release_database(path)

    db = open_and_migrate(f"sqlite:///{path}")

    assert NEW_COLUMNS <= columns(db)
    with database_proxy.connection_context():
        node = Worker.select(Worker.name, Worker.asleep, Worker.pending_action, Worker.sleep_schedule).get()
        assert (node.name, node.asleep, node.pending_action, node.sleep_schedule) == (
            "old-node", False, None, None)
        assert {v.version for v in SchemaVersion.select()} == set(range(1, len(MIGRATIONS) + 1))
    db.close()


def test_on_a_new_database_the_migration_finds_its_columns_already_there(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    db = open_and_migrate(url)
    with database_proxy.connection_context():
        SchemaVersion.delete().where(SchemaVersion.version == WORKER_CONTROL).execute()
    db = open_and_migrate(url)  # runs the migration again over a table that has every column
    assert NEW_COLUMNS <= columns(db)
    db.close()
