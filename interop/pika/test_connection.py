"""Connection and channel lifecycle, capabilities, and declare/delete/purge basics."""

import pika

from amqp_helpers import connection_params, ready_count, wait_ready


def test_connect_open_channels_and_close():
    connection = pika.BlockingConnection(connection_params())
    try:
        assert connection.is_open
        first = connection.channel()
        second = connection.channel()
        assert first.is_open and second.is_open
        assert first.channel_number != second.channel_number
        first.close()
        assert first.is_closed
        assert second.is_open
    finally:
        connection.close()
    assert connection.is_closed


def test_server_advertises_the_capabilities_clients_rely_on(conn):
    assert conn.publisher_confirms_supported
    assert conn.basic_nack_supported
    assert conn.consumer_cancel_notify_supported


def test_queue_declare_redeclare_and_passive(ch, names):
    queue = names.queue()
    ok = ch.queue_declare(queue)
    assert ok.method.queue == queue
    assert ok.method.message_count == 0
    assert ok.method.consumer_count == 0
    # Redeclaring with identical arguments is idempotent.
    again = ch.queue_declare(queue)
    assert again.method.queue == queue
    ch.basic_publish("", queue, b"one")
    ch.basic_publish("", queue, b"two")
    assert wait_ready(ch, queue, 2) == 2
    passive = ch.queue_declare(queue, passive=True)
    assert passive.method.queue == queue
    assert passive.method.message_count == 2


def test_server_named_queue(ch):
    ok = ch.queue_declare("", exclusive=True)
    assert ok.method.queue.startswith("amq.gen-")
    assert len(ok.method.queue) > len("amq.gen-")
    # The generated name works like any other queue name.
    ch.basic_publish("", ok.method.queue, b"x")
    assert wait_ready(ch, ok.method.queue, 1) == 1


def test_exchange_declare_each_type_and_passive(ch, names):
    for kind in ("direct", "fanout", "topic", "headers"):
        exchange = names.exchange()
        ch.exchange_declare(exchange, kind)
        ch.exchange_declare(exchange, kind)  # idempotent
        ch.exchange_declare(exchange, passive=True)


def test_predeclared_exchanges_exist(ch):
    for exchange in ("amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"):
        ch.exchange_declare(exchange, passive=True)


def test_queue_purge_and_delete_report_counts(ch, names):
    queue = names.queue()
    ch.queue_declare(queue)
    for i in range(3):
        ch.basic_publish("", queue, f"m{i}".encode())
    assert wait_ready(ch, queue, 3) == 3
    assert ch.queue_purge(queue).method.message_count == 3
    assert ready_count(ch, queue) == 0
    ch.basic_publish("", queue, b"left")
    assert wait_ready(ch, queue, 1) == 1
    assert ch.queue_delete(queue).method.message_count == 1


def test_exchange_delete(ch, names):
    exchange = names.exchange()
    ch.exchange_declare(exchange, "direct")
    ch.exchange_delete(exchange)
    # A fresh declare with another type now succeeds: the old one is really gone.
    ch.exchange_declare(exchange, "fanout")
