"""Direct reply-to with pika, as RabbitMQ 3.10 answers it (tests/fixtures/rabbitmq-3.10/
consumers.json): an RPC round trip between two connections, and the misuse errors."""

import pika
import pytest

from amqp_helpers import connection_params

REPLY_TO = "amq.rabbitmq.reply-to"


def test_rpc_round_trip_over_direct_reply_to(conn, ch, names):
    queue = names.queue()
    ch.queue_declare(queue)
    replies = []
    ch.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append((m, b)), auto_ack=True)
    ch.basic_publish("", queue, b"ping", pika.BasicProperties(reply_to=REPLY_TO))

    server = pika.BlockingConnection(connection_params())
    try:
        sch = server.channel()
        method, props, body = None, None, None
        for _ in range(100):
            method, props, body = sch.basic_get(queue, auto_ack=True)
            if method:
                break
            server.process_data_events(0.02)
        assert body == b"ping"
        assert props.reply_to.startswith(REPLY_TO + ".")
        sch.basic_publish("", props.reply_to, b"pong")
    finally:
        server.close()

    for _ in range(100):
        if replies:
            break
        conn.process_data_events(0.02)
    method, body = replies[0]
    assert body == b"pong"
    assert method.exchange == ""
    assert method.routing_key == props.reply_to
    ok = ch.queue_declare(REPLY_TO, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (0, 1)


def test_consuming_with_acks_is_refused(ch):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)
    assert (e.value.reply_code, e.value.reply_text) == (
        406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")


def test_consuming_twice_is_refused(ch):
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    assert (e.value.reply_code, e.value.reply_text) == (
        406, "PRECONDITION_FAILED - reply consumer already set")


def test_publishing_a_request_without_a_reply_consumer_is_refused(ch, names):
    queue = names.queue()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"req", pika.BasicProperties(reply_to=REPLY_TO))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(queue, passive=True)
    assert (e.value.reply_code, e.value.reply_text) == (
        406, "PRECONDITION_FAILED - fast reply consumer does not exist")
