"""Publisher confirms (BlockingChannel.confirm_delivery) and mandatory returns."""

import pika
import pytest
from pika.exceptions import UnroutableError

from amqp_helpers import ready_count


def test_confirmed_publishes_are_enqueued(ch, names):
    queue = names.queue()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    for i in range(20):
        # In confirm mode pika waits for basic.ack and raises on nack or return.
        ch.basic_publish("", queue, f"c{i}".encode())
    assert ready_count(ch, queue) == 20


def test_mandatory_routable_publish_is_confirmed(ch, names):
    queue = names.queue()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"routed", mandatory=True)
    assert ready_count(ch, queue) == 1


def test_mandatory_unroutable_default_exchange_is_returned(ch, names):
    missing = names.queue()  # never declared
    ch.confirm_delivery()
    with pytest.raises(UnroutableError) as err:
        ch.basic_publish(
            "", missing, b"nowhere", properties=pika.BasicProperties(message_id="ret-1"), mandatory=True
        )
    (returned,) = err.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.method.exchange == ""
    assert returned.method.routing_key == missing
    assert returned.body == b"nowhere"
    assert returned.properties.message_id == "ret-1"
    # The channel stays usable after a return.
    assert ch.is_open
    ch.basic_publish("", missing, b"not mandatory")  # silently dropped, still acked


def test_mandatory_unroutable_through_unbound_exchange_is_returned(ch, names):
    exchange = names.exchange()
    ch.exchange_declare(exchange, "direct")
    ch.confirm_delivery()
    with pytest.raises(UnroutableError) as err:
        ch.basic_publish(exchange, "no-binding", b"lost", mandatory=True)
    (returned,) = err.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key) == (exchange, "no-binding")
    assert returned.body == b"lost"


def test_return_without_confirms_reaches_the_return_callback(conn, ch, names):
    exchange = names.exchange()
    ch.exchange_declare(exchange, "fanout")  # no queues bound
    returns = []
    ch.add_on_return_callback(lambda channel, method, props, body: returns.append((method, body)))
    ch.basic_publish(exchange, "rk", b"bounced", mandatory=True)
    for _ in range(50):
        if returns:
            break
        conn.process_data_events(time_limit=0.1)
    assert len(returns) == 1
    method, body = returns[0]
    assert (method.reply_code, method.reply_text) == (312, "NO_ROUTE")
    assert (method.exchange, method.routing_key, body) == (exchange, "rk", b"bounced")
