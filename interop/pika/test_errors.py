"""Error cases: reply code AND reply text, exactly as RabbitMQ sends them.

Channel errors close only the channel; each test also checks that the connection
survives and a new channel works.
"""

import pika
import pytest
from pika.exceptions import (
    ChannelClosedByBroker,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
)

from amqp_helpers import connection_params, get_one, url_with, vhost


def shortstr(text):
    """How RabbitMQ fits a reply text into an AMQP shortstr: past 255 bytes it keeps the
    first 252 and appends '...'."""
    return text if len(text.encode()) <= 255 else text.encode()[:252].decode() + "..."


def assert_channel_error(err, code, text):
    assert (err.value.reply_code, err.value.reply_text) == (code, shortstr(text))


def assert_connection_survives(conn):
    assert conn.is_open
    conn.channel().queue_declare("", exclusive=True)


def test_passive_declare_of_missing_queue(conn, ch, names):
    queue = names.queue()
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.queue_declare(queue, passive=True)
    assert_channel_error(err, 404, f"NOT_FOUND - no queue '{queue}' in vhost '{vhost()}'")
    assert ch.is_closed
    assert_connection_survives(conn)


def test_long_reply_text_is_truncated_to_a_shortstr(conn, ch):
    queue = "interop-" + "n" * 240  # no need to clean up: it is never created
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.queue_declare(queue, passive=True)
    full = f"NOT_FOUND - no queue '{queue}' in vhost '{vhost()}'"
    assert len(err.value.reply_text) == 255
    assert err.value.reply_text == full[:252] + "..."
    assert_connection_survives(conn)


def test_passive_declare_of_missing_exchange(conn, ch, names):
    exchange = names.exchange()
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.exchange_declare(exchange, passive=True)
    assert_channel_error(err, 404, f"NOT_FOUND - no exchange '{exchange}' in vhost '{vhost()}'")
    assert_connection_survives(conn)


def test_redeclare_exchange_with_another_type(conn, ch, names):
    exchange = names.exchange()
    ch.exchange_declare(exchange, "direct")
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.exchange_declare(exchange, "fanout")
    assert_channel_error(
        err,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{exchange}' in vhost '{vhost()}': "
        "received 'fanout' but current is 'direct'",
    )
    assert_connection_survives(conn)


def test_redeclare_queue_with_other_durability(conn, ch, names):
    queue = names.queue()
    ch.queue_declare(queue, durable=False)
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.queue_declare(queue, durable=True)
    assert_channel_error(
        err,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{queue}' in vhost '{vhost()}': "
        "received 'true' but current is 'false'",
    )
    assert_connection_survives(conn)


@pytest.mark.parametrize("method", ["ack", "nack", "reject"])
def test_unknown_delivery_tag(conn, ch, names, method):
    queue = names.queue()
    ch.queue_declare(queue)
    {"ack": ch.basic_ack, "nack": ch.basic_nack, "reject": ch.basic_reject}[method](82)
    # ack/nack/reject have no reply; the error surfaces on the next synchronous call.
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.queue_declare(queue, passive=True)
    assert_channel_error(err, 406, "PRECONDITION_FAILED - unknown delivery tag 82")
    assert_connection_survives(conn)


def test_double_ack_is_an_unknown_delivery_tag(conn, ch, names):
    queue = names.queue()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"once")
    method = get_one(ch, queue)[0]
    assert method is not None
    ch.basic_ack(method.delivery_tag)
    ch.basic_ack(method.delivery_tag)
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.queue_declare(queue, passive=True)
    assert_channel_error(err, 406, f"PRECONDITION_FAILED - unknown delivery tag {method.delivery_tag}")


def test_publish_to_missing_exchange(conn, ch, names):
    exchange = names.exchange()
    ch.basic_publish(exchange, "rk", b"nowhere")
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.queue_declare("", exclusive=True)
    assert_channel_error(err, 404, f"NOT_FOUND - no exchange '{exchange}' in vhost '{vhost()}'")
    assert_connection_survives(conn)


def test_publish_to_missing_exchange_in_confirm_mode(conn, ch, names):
    exchange = names.exchange()
    ch.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.basic_publish(exchange, "rk", b"nowhere")
    assert_channel_error(err, 404, f"NOT_FOUND - no exchange '{exchange}' in vhost '{vhost()}'")
    assert_connection_survives(conn)


def test_bind_to_missing_exchange_and_missing_queue(conn, names):
    queue, exchange = names.queue(), names.exchange()
    ch = conn.channel()
    ch.queue_declare(queue)
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.queue_bind(queue, exchange, "rk")
    assert_channel_error(err, 404, f"NOT_FOUND - no exchange '{exchange}' in vhost '{vhost()}'")
    missing_queue = names.queue()
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.queue_bind(missing_queue, "amq.direct", "rk")
    assert_channel_error(err, 404, f"NOT_FOUND - no queue '{missing_queue}' in vhost '{vhost()}'")


def test_consume_and_get_from_missing_queue(conn, names):
    queue = names.queue()
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.basic_consume(queue, lambda *args: None)
    assert_channel_error(err, 404, f"NOT_FOUND - no queue '{queue}' in vhost '{vhost()}'")
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.basic_get(queue)
    assert_channel_error(err, 404, f"NOT_FOUND - no queue '{queue}' in vhost '{vhost()}'")


def test_declare_exchange_with_reserved_prefix(conn, ch):
    exchange = "amq.interop-reserved"
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.exchange_declare(exchange, "direct")
    assert_channel_error(
        err, 403, f"ACCESS_REFUSED - exchange name '{exchange}' contains reserved prefix 'amq.*'"
    )
    assert_connection_survives(conn)


def test_exclusive_queue_is_locked_to_its_connection(conn, names):
    queue = names.queue()
    conn.channel().queue_declare(queue, exclusive=True)
    other = pika.BlockingConnection(connection_params())
    try:
        ch = other.channel()
        with pytest.raises(ChannelClosedByBroker) as err:
            ch.queue_declare(queue, passive=True)
        assert_channel_error(
            err,
            405,
            f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{queue}' in vhost '{vhost()}'. "
            "It could be originally declared on another connection or the exclusive property value does not "
            "match that of the original declaration.",
        )
        assert other.is_open
    finally:
        other.close()


def test_commit_without_select(conn, ch):
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.tx_commit()
    assert_channel_error(err, 406, "PRECONDITION_FAILED - channel is not transactional")
    assert_connection_survives(conn)


def test_switching_between_confirm_and_tx_modes(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.tx_select()
    assert_channel_error(err, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")
    ch = conn.channel()
    ch.tx_select()
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.confirm_delivery()
    assert_channel_error(err, 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")


def test_wrong_password_is_refused():
    with pytest.raises(ProbableAuthenticationError) as err:
        pika.BlockingConnection(connection_params(url_with(password="definitely-wrong")))
    assert (
        "(403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile.'" in str(err.value)
    )


def test_missing_vhost_is_refused():
    with pytest.raises(ProbableAccessDeniedError) as err:
        pika.BlockingConnection(connection_params(url_with(vhost_name="interop-no-such-vhost")))
    assert "(530) 'NOT_ALLOWED - vhost interop-no-such-vhost not found'" in str(err.value)
