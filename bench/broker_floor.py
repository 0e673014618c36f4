"""Row 1, the broker floor: plain pika moving N persistent messages through a priority queue.

A publisher process and a consumer process run at once, as Corral's dispatcher
and agents do. The queue is durable with ``x-max-priority=9``; messages are
persistent, published without confirms; the consumer acks each one manually.
The rate is N / (last ack - first publish).
"""
from __future__ import annotations

import multiprocessing as mp
import time

import pika

from bench.broker import connect
from bench.results import Results
from common import messages

ROW = "broker floor"


def _body(i: int) -> bytes:
    # A realistic chunk.assign, the message Corral moves once per chunk.
    return messages.encode(messages.ChunkAssign(
        chunk_id=i, task_id=1, lease_id=f"{i:032x}", attempt=1, command="noop", parser="noop",
        params={}, frames=[[i, i]], priority=50))


def _declare(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> None:
    channel.queue_declare(queue, durable=True, arguments={"x-max-priority": 9})


def _publish(queue: str, n: int, go: mp.synchronize.Event, started: mp.Value) -> None:  # type: ignore[name-defined]
    conn = connect()
    channel = conn.channel()
    _declare(channel, queue)
    props = pika.BasicProperties(delivery_mode=2, priority=5, content_type="application/json")
    bodies = [_body(i) for i in range(n)]
    go.wait()
    started.value = time.time()
    for body in bodies:
        channel.basic_publish("", queue, body, props)
    conn.close()


def _consume(queue: str, n: int, prefetch: int, ready: mp.synchronize.Event,  # type: ignore[name-defined]
             finished: mp.Value) -> None:  # type: ignore[name-defined]
    conn = connect()
    channel = conn.channel()
    _declare(channel, queue)
    channel.basic_qos(prefetch_count=prefetch)
    count = 0

    def on_message(ch, method, _props, _body):  # noqa: ANN001, ANN202 - pika callback
        nonlocal count
        ch.basic_ack(method.delivery_tag)
        count += 1
        if count == n:
            finished.value = time.time()
            ch.stop_consuming()

    channel.basic_consume(queue, on_message, auto_ack=False)
    ready.set()
    channel.start_consuming()
    conn.close()


def measure(queue: str, n: int, prefetch: int) -> float:
    """Messages per second through ``queue`` with one publisher and one consumer."""
    ctx = mp.get_context("fork")
    go, ready = ctx.Event(), ctx.Event()
    started, finished = ctx.Value("d", 0.0), ctx.Value("d", 0.0)
    consumer = ctx.Process(target=_consume, args=(queue, n, prefetch, ready, finished))
    publisher = ctx.Process(target=_publish, args=(queue, n, go, started))
    consumer.start()
    publisher.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the floor consumer did not start")
        go.set()
        publisher.join(300)
        consumer.join(300)
        if not finished.value:
            raise RuntimeError(f"the floor consumer did not receive {n} messages")
        return n / (finished.value - started.value)
    finally:
        for proc in (publisher, consumer):
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        conn = connect()
        conn.channel().queue_delete(queue)
        conn.close()


def run(results: Results, namespace: str, n: int) -> None:
    for prefetch in (1, 50):
        rate = measure(f"{namespace}.floor.p{prefetch}", n, prefetch)
        results.add(ROW, f"floor_p{prefetch}", f"pika, persistent, manual ack, prefetch {prefetch}",
                    rate, "msg/s", f"N={n}")
