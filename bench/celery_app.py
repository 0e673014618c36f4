"""The Celery application the peer row runs: one no-op task, configured by environment.

``BENCH_CELERY_QUEUE`` names the queue (inside the run's namespace) and
``BENCH_CELERY_BACKEND`` the result backend (empty: none). Workers run as
``celery -A bench.celery_app worker --pool=solo``, one task at a time each.
"""
from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

from bench.broker import KOMBU_URL


def make_app(queue: str, backend: str | None) -> Celery:
    """The app for one queue and backend; the client builds its own per measurement."""
    celery = Celery("bench", broker=KOMBU_URL, backend=backend or None, set_as_current=False)
    celery.conf.update(_settings(queue))
    return celery


def _settings(queue: str) -> dict[str, object]:
    return dict(
    task_default_queue=queue,
    task_default_exchange=queue,
    task_default_routing_key=queue,
    task_queue_max_priority=9,  # the same queue type as Corral's chunk queues
    task_acks_late=True,
    worker_prefetch_multiplier=1,  # one unacked task per worker, like a Corral agent
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_enable_remote_control=False,  # no pidbox queues to clean up
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    )


app = make_app(os.environ.get("BENCH_CELERY_QUEUE", "bench.celery"),
               os.environ.get("BENCH_CELERY_BACKEND", ""))


@app.task(name="bench.noop")
def noop(index: int) -> None:
    """Does nothing: the peer of Corral's ``noop`` chunk."""
    return None


@app.task(name="bench.touch", ignore_result=True)
def touch(path: str) -> None:
    """Marks the end of a run without a result backend: every earlier task was taken first."""
    Path(path).touch()
