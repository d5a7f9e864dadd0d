"""Publish and consume through each exchange type.

Publishes go through a confirm-mode channel, so once basic_publish returns the broker
has routed the message; ready counts are then exact without any waiting.
"""

import pika
import pytest

from amqp_helpers import bodies, connection_params, consume_n, ready_count


@pytest.fixture
def pub(conn):
    """A confirm-mode channel for publishing."""
    channel = conn.channel()
    channel.confirm_delivery()
    return channel


def declare_queues(ch, names, n):
    queues = [names.queue() for _ in range(n)]
    for queue in queues:
        ch.queue_declare(queue)
    return queues


def test_default_exchange_round_trips_body_and_properties(ch, pub, names):
    (queue,) = declare_queues(ch, names, 1)
    sent = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"x-str": "v", "x-int": 42, "x-bool": True, "x-nested": {"k": "v"}},
        delivery_mode=2,
        priority=3,
        correlation_id="corr-1",
        reply_to="reply-q",
        expiration="60000",
        message_id="msg-1",
        timestamp=1700000000,
        type="test.type",
        user_id=connection_params().credentials.username,  # must match the login
        app_id="interop",
    )
    pub.basic_publish("", queue, b'{"hello": "world"}', properties=sent)
    (method, got, body) = consume_n(ch, queue, 1)[0]
    assert body == b'{"hello": "world"}'
    assert method.exchange == ""
    assert method.routing_key == queue
    assert method.redelivered is False
    for field in (
        "content_type",
        "content_encoding",
        "headers",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
    ):
        assert getattr(got, field) == getattr(sent, field), field


def test_default_exchange_large_and_empty_bodies(ch, pub, names):
    (queue,) = declare_queues(ch, names, 1)
    large = bytes(range(256)) * 2048  # 512 KiB: several body frames at any frame_max
    pub.basic_publish("", queue, large)
    pub.basic_publish("", queue, b"")
    got = consume_n(ch, queue, 2)
    assert bodies(got) == [large, b""]


def test_direct_exchange_routes_by_exact_key(ch, pub, names):
    exchange = names.exchange()
    ch.exchange_declare(exchange, "direct")
    q_red, q_blue, q_both = declare_queues(ch, names, 3)
    ch.queue_bind(q_red, exchange, "red")
    ch.queue_bind(q_blue, exchange, "blue")
    ch.queue_bind(q_both, exchange, "red")
    ch.queue_bind(q_both, exchange, "blue")
    pub.basic_publish(exchange, "red", b"r1")
    pub.basic_publish(exchange, "blue", b"b1")
    pub.basic_publish(exchange, "green", b"g1")
    pub.basic_publish(exchange, "red", b"r2")
    assert [ready_count(ch, q) for q in (q_red, q_blue, q_both)] == [2, 1, 3]
    assert bodies(consume_n(ch, q_red, 2)) == [b"r1", b"r2"]
    assert bodies(consume_n(ch, q_blue, 1)) == [b"b1"]
    got = consume_n(ch, q_both, 3)
    assert bodies(got) == [b"r1", b"b1", b"r2"]
    assert [m.routing_key for m, _, _ in got] == ["red", "blue", "red"]
    assert all(m.exchange == exchange for m, _, _ in got)


def test_direct_exchange_unbind_stops_routing(ch, pub, names):
    exchange = names.exchange()
    ch.exchange_declare(exchange, "direct")
    (queue,) = declare_queues(ch, names, 1)
    ch.queue_bind(queue, exchange, "k")
    pub.basic_publish(exchange, "k", b"before")
    ch.queue_unbind(queue, exchange, "k")
    pub.basic_publish(exchange, "k", b"after")
    assert ready_count(ch, queue) == 1
    assert bodies(consume_n(ch, queue, 1)) == [b"before"]


def test_fanout_exchange_copies_to_every_queue(ch, pub, names):
    exchange = names.exchange()
    ch.exchange_declare(exchange, "fanout")
    queues = declare_queues(ch, names, 3)
    for queue in queues:
        ch.queue_bind(queue, exchange, "ignored-binding-key")
    pub.basic_publish(exchange, "any-key", b"f1")
    pub.basic_publish(exchange, "", b"f2")
    for queue in queues:
        assert ready_count(ch, queue) == 2
        got = consume_n(ch, queue, 2)
        assert bodies(got) == [b"f1", b"f2"]
        assert [m.routing_key for m, _, _ in got] == ["any-key", ""]


def test_topic_exchange_wildcards(ch, pub, names):
    exchange = names.exchange()
    ch.exchange_declare(exchange, "topic")
    patterns = ["a.*.c", "a.#", "#.c", "*", "#", "a.b.c"]
    queues = declare_queues(ch, names, len(patterns))
    for queue, pattern in zip(queues, patterns):
        ch.queue_bind(queue, exchange, pattern)
    keys = ["a.b.c", "a", "x.c", "a.b.b.c", "b", "", "a.c"]
    for key in keys:
        pub.basic_publish(exchange, key, key.encode())
    expected = {
        "a.*.c": ["a.b.c"],
        "a.#": ["a.b.c", "a", "a.b.b.c", "a.c"],
        "#.c": ["a.b.c", "x.c", "a.b.b.c", "a.c"],
        "*": ["a", "b"],
        "#": keys,
        "a.b.c": ["a.b.c"],
    }
    for queue, pattern in zip(queues, patterns):
        want = expected[pattern]
        assert ready_count(ch, queue) == len(want), pattern
        got = consume_n(ch, queue, len(want))
        assert [b.decode() for b in bodies(got)] == want, pattern


def test_headers_exchange_all_and_any(ch, pub, names):
    exchange = names.exchange()
    ch.exchange_declare(exchange, "headers")
    q_all, q_any = declare_queues(ch, names, 2)
    ch.queue_bind(q_all, exchange, "", arguments={"x-match": "all", "a": "1", "b": "2"})
    ch.queue_bind(q_any, exchange, "", arguments={"x-match": "any", "a": "1", "b": "2"})

    def publish(body, headers):
        pub.basic_publish(exchange, "rk-ignored", body, properties=pika.BasicProperties(headers=headers))

    publish(b"only-a", {"a": "1"})
    publish(b"a-and-b", {"a": "1", "b": "2", "extra": "z"})
    publish(b"wrong-value", {"a": "2", "b": "3"})
    publish(b"none", None)
    publish(b"only-b", {"b": "2"})
    assert bodies(consume_n(ch, q_all, 1)) == [b"a-and-b"]
    assert ready_count(ch, q_all) == 0
    assert bodies(consume_n(ch, q_any, 3)) == [b"only-a", b"a-and-b", b"only-b"]
    assert ready_count(ch, q_any) == 0


def test_consumer_receives_messages_published_after_it_started(conn, ch, names):
    (queue,) = declare_queues(ch, names, 1)
    publisher = conn.channel()
    received = []

    def on_message(channel, method, properties, body):
        received.append(body)
        channel.basic_ack(method.delivery_tag)

    tag = ch.basic_consume(queue, on_message)
    for i in range(5):
        publisher.basic_publish("", queue, f"live-{i}".encode())
    # Bounded event loop: at most 50 slices of 0.1 s, stop as soon as all arrived.
    for _ in range(50):
        if len(received) == 5:
            break
        conn.process_data_events(time_limit=0.1)
    ch.basic_cancel(tag)
    assert received == [f"live-{i}".encode() for i in range(5)]
    assert ready_count(ch, queue) == 0
