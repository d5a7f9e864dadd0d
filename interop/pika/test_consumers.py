"""Priority queues, consumer priorities, single active consumer and browsing through pika.

The first four are written against RabbitMQ 3.10.8 and pass there unchanged; the x-browse test
is Lagomorph's own and is skipped against another broker. Waits are bounded polls for data,
never fixed sleeps.
"""

import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from amqp_helpers import WAIT_SECONDS, vhost, wait_ready


def drain(ch, queue):
    """Every ready message by basic.get with auto-ack: [(body, redelivered)]."""
    out = []
    while True:
        method, _, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((body.decode(), method.redelivered))


def pump(conn, predicate):
    """Processes I/O until `predicate()` holds, bounded in time; its last value."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate() and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.02)
    return predicate()


def test_a_priority_queue_delivers_highest_first_fifo_within(conn, ch, names):
    q = names.queue()
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    ch.confirm_delivery()
    for body, p in [("n", None), ("p1", 1), ("p5a", 5), ("p9", 9), ("p3", 3), ("p5b", 5), ("p0", 0)]:
        props = pika.BasicProperties(priority=p) if p is not None else None
        ch.basic_publish("", q, body.encode(), properties=props)
    assert wait_ready(ch, q, 7) == 7
    # 9 counts as 5 (FIFO with the 5s); no priority counts as 0.
    assert [b for b, _ in drain(ch, q)] == ["p5a", "p9", "p5b", "p3", "p1", "n", "p0"]


def test_a_non_integer_consumer_priority_is_refused(conn, ch, names):
    q = names.queue()
    ch.queue_declare(q)
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.basic_consume(q, lambda *a: None, arguments={"x-priority": "high"})
    assert (err.value.reply_code, err.value.reply_text) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '{vhost()}': "
        '"expected integer, got longstr"',
    )


def test_the_highest_priority_consumer_gets_the_messages(conn, ch, names):
    q = names.queue()
    ch.queue_declare(q)
    seen = []
    ch.basic_consume(q, lambda c, m, p, b: seen.append(("lo", b.decode())), auto_ack=True,
                     arguments={"x-priority": 1})
    ch.basic_consume(q, lambda c, m, p, b: seen.append(("hi", b.decode())), auto_ack=True,
                     arguments={"x-priority": 10})
    for i in range(4):
        ch.basic_publish("", q, f"m{i}".encode())
    assert pump(conn, lambda: len(seen) == 4)
    assert seen == [("hi", f"m{i}") for i in range(4)]


def test_single_active_consumer_hands_over_on_cancel(conn, ch, names):
    q = names.queue()
    ch.queue_declare(q, arguments={"x-single-active-consumer": True})
    seen = []
    ch.basic_consume(q, lambda c, m, p, b: seen.append(("c1", b.decode())), auto_ack=True, consumer_tag="c1")
    ch.basic_consume(q, lambda c, m, p, b: seen.append(("c2", b.decode())), auto_ack=True, consumer_tag="c2")
    for i in range(3):
        ch.basic_publish("", q, f"a{i}".encode())
    assert pump(conn, lambda: len(seen) == 3)
    ch.basic_cancel("c1")
    for i in range(3):
        ch.basic_publish("", q, f"b{i}".encode())
    assert pump(conn, lambda: len(seen) == 6)
    assert seen == [("c1", "a0"), ("c1", "a1"), ("c1", "a2"), ("c2", "b0"), ("c2", "b1"), ("c2", "b2")]
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1


def test_an_x_browse_consumer_gets_copies_and_the_messages_stay(conn, ch, names):
    if conn._impl.server_properties.get("product") != b"Lagomorph" and \
            conn._impl.server_properties.get("product") != "Lagomorph":
        pytest.skip("x-browse is Lagomorph's own")
    q = names.queue()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode())
    seen = []
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    ch.basic_consume(q, lambda c, m, p, b: seen.append(b.decode()), auto_ack=True,
                     consumer_tag="browser", arguments={"x-browse": True})
    # The broker cancels the consumer after the copies.
    assert pump(conn, lambda: cancelled == ["browser"])
    assert seen == ["m0", "m1", "m2"]
    assert drain(ch, q) == [("m0", False), ("m1", False), ("m2", False)]
