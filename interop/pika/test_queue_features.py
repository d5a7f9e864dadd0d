"""Queue arguments and what they do: argument checks and equivalence (code and text), message
TTL (queue and per message, TTL 0, expiry from the head), queue expiry, dead-lettering with its
x-death header for each reason, length limits with each overflow mode, and the delivery limit.

Written against RabbitMQ 3.10.8 and passing there unchanged (the delivery-limit test declares a
quorum queue, which is where RabbitMQ has the limit; Lagomorph takes x-queue-type as a hint and
has the limit on every queue). Waits are bounded polls for data, never fixed sleeps.
"""

import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, NackError

from amqp_helpers import WAIT_SECONDS, get_one, ready_count, vhost, wait_ready


def assert_refused(ch, code, text, fn):
    with pytest.raises(ChannelClosedByBroker) as err:
        fn()
    assert (err.value.reply_code, err.value.reply_text) == (code, text)


def wait_until(ch, predicate):
    """Polls `predicate()` while the connection does I/O, bounded in time; its last value."""
    deadline = time.monotonic() + WAIT_SECONDS
    value = predicate()
    while not value and time.monotonic() < deadline:
        ch.connection.process_data_events(time_limit=0.02)
        value = predicate()
    return value


def deaths(props):
    return (props.headers or {}).get("x-death") or []


# --- argument checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("args,key,term", [
    ({"x-message-ttl": -1}, "x-message-ttl", "{value_negative,-1}"),
    ({"x-message-ttl": "1000"}, "x-message-ttl", '"expected integer, got longstr"'),
    ({"x-message-ttl": 315360000001}, "x-message-ttl", "{value_too_large,315360000001}"),
    ({"x-expires": 0}, "x-expires", "{value_zero,0}"),
    ({"x-max-length": -1}, "x-max-length", "{value_negative,-1}"),
    ({"x-max-length-bytes": "x"}, "x-max-length-bytes", '"expected integer, got longstr"'),
    ({"x-overflow": "nope"}, "x-overflow", "invalid_overflow"),
    ({"x-overflow": 1}, "x-overflow", "{unacceptable_type,signedint}"),
    ({"x-dead-letter-routing-key": "k"}, "x-dead-letter-routing-key", "routing_key_but_no_dlx_defined"),
])
def test_bad_arguments_are_refused_with_rabbitmq_texts(conn, ch, names, args, key, term):
    q = names.queue()
    assert_refused(ch, 406,
                   f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '{vhost()}': {term}",
                   lambda: ch.queue_declare(q, arguments=args))


def test_a_non_string_dead_letter_exchange_has_its_own_text(conn, ch, names):
    q = names.queue()
    assert_refused(ch, 406,
                   f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' "
                   f"in queue '{q}' in vhost '{vhost()}'",
                   lambda: ch.queue_declare(q, arguments={"x-dead-letter-exchange": 5}))


def test_redeclaring_with_other_arguments_is_inequivalent(conn, ch, names):
    q = names.queue()
    ch.queue_declare(q, arguments={"x-message-ttl": 1000, "x-unknown": 1})
    ch.queue_declare(q, arguments={"x-message-ttl": 1000, "x-unknown": 2})  # unknown keys: ignored
    assert_refused(ch, 406,
                   f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost "
                   f"'{vhost()}': received '2000' but current is '1000'",
                   lambda: ch.queue_declare(q, arguments={"x-message-ttl": 2000}))
    ch2 = conn.channel()
    assert_refused(ch2, 406,
                   f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost "
                   f"'{vhost()}': received none but current is the value '1000' of type 'signedint'",
                   lambda: ch2.queue_declare(q))


@pytest.mark.parametrize("value,term", [
    ("foo", "no_integer"),
    ("-1", "{value_negative,-1}"),
    ("10ms", '{leftover_string,"ms"}'),
])
def test_a_bad_expiration_is_refused_on_publish(conn, ch, names, value, term):
    q = names.queue()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x", pika.BasicProperties(expiration=value))
    assert_refused(ch, 406, f"PRECONDITION_FAILED - invalid expiration '{value}': {term}",
                   lambda: ch.queue_declare(q, passive=True))


# --- TTL and expiry ------------------------------------------------------------------------------

def test_ttl_zero_delivers_to_a_waiting_consumer_or_expires(conn, ch, names):
    q = names.queue()
    ch.queue_declare(q, arguments={"x-message-ttl": 0})
    ch.basic_publish("", q, b"nobody")
    assert wait_ready(ch, q, 0) == 0
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", q, b"taken")
    assert wait_until(ch, lambda: got) == [b"taken"]


def test_a_message_ttl_expires_it_into_the_dead_letter_exchange(conn, ch, names):
    dlq, q = names.queue(), names.queue()
    ch.queue_declare(dlq)
    ch.queue_declare(q, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                   "x-dead-letter-routing-key": dlq})
    before = int(time.time())
    ch.basic_publish("", q, b"late", pika.BasicProperties(expiration="10000", headers={"a": 1}))
    method, props, body = get_one(ch, dlq, auto_ack=True)
    assert body == b"late"
    assert (method.exchange, method.routing_key) == ("", dlq)
    assert props.expiration is None
    death = deaths(props)[0]
    assert {k: death[k] for k in ["count", "reason", "queue", "exchange", "routing-keys",
                                  "original-expiration"]} == {
        "count": 1, "reason": "expired", "queue": q, "exchange": "", "routing-keys": [q],
        "original-expiration": "10000"}
    assert "time" in death and before > 0
    h = props.headers
    assert (h["x-first-death-reason"], h["x-first-death-queue"], h["x-first-death-exchange"]) == \
        ("expired", q, "")
    assert h["a"] == 1


def test_an_expired_message_is_never_delivered(conn, ch, names):
    q = names.queue()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"long", pika.BasicProperties(expiration="60000"))
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="50"))
    start = time.monotonic()
    while time.monotonic() - start < 0.2:
        ch.connection.process_data_events(time_limit=0.02)
    assert ready_count(ch, q) == 2  # expiry is from the head
    assert ch.basic_get(q, auto_ack=True)[2] == b"long"
    assert ch.basic_get(q, auto_ack=True)[0] is None  # "short" expired behind it: never delivered


def test_an_unused_queue_expires(conn, ch, names):
    q = names.queue()
    ch.queue_declare(q, arguments={"x-expires": 200})
    # A passive declare uses the queue too (its timer starts over), so look less often than
    # the expiry: the queue goes in a gap between two looks.
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        gap = time.monotonic() + 0.4
        while time.monotonic() < gap:
            conn.process_data_events(time_limit=0.05)
        check = conn.channel()
        try:
            check.queue_declare(q, passive=True)
        except ChannelClosedByBroker as e:
            assert (e.reply_code, e.reply_text) == (
                404, f"NOT_FOUND - no queue '{q}' in vhost '{vhost()}'")
            return
        check.close()
        assert time.monotonic() < deadline, "the queue never expired"


# --- dead-lettering reasons ----------------------------------------------------------------------

def test_reject_without_requeue_dead_letters_with_reason_rejected(conn, ch, names):
    dlq, q = names.queue(), names.queue()
    ch.queue_declare(dlq)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    ch.basic_publish("", q, b"no", pika.BasicProperties(headers={"CC": ["elsewhere"]}))
    method, _, _ = get_one(ch, q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    _, props, body = get_one(ch, dlq, auto_ack=True)
    assert body == b"no"
    death = deaths(props)[0]
    assert (death["reason"], death["queue"], death["routing-keys"]) == ("rejected", q, [q, "elsewhere"])
    assert "CC" not in props.headers  # removed with a dead-letter routing key, as RabbitMQ


def test_drop_head_dead_letters_the_oldest_with_reason_maxlen(conn, ch, names):
    dlq, q = names.queue(), names.queue()
    ch.queue_declare(dlq)
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-dead-letter-exchange": "",
                                   "x-dead-letter-routing-key": dlq})
    ch.basic_publish("", q, b"old")
    ch.basic_publish("", q, b"new")
    _, props, body = get_one(ch, dlq, auto_ack=True)
    assert (body, deaths(props)[0]["reason"]) == (b"old", "maxlen")
    assert ch.basic_get(q, auto_ack=True)[2] == b"new"


def test_reject_publish_nacks_in_confirm_mode(conn, ch, names):
    q = names.queue()
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"fits")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"refused")
    assert ready_count(ch, q) == 1


def test_reject_publish_dlx_nacks_and_dead_letters(conn, ch, names):
    dlq, q = names.queue(), names.queue()
    ch.queue_declare(dlq)
    ch.queue_declare(q, arguments={"x-max-length-bytes": 4, "x-overflow": "reject-publish-dlx",
                                   "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"four")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"more")
    _, props, body = get_one(ch, dlq, auto_ack=True)
    assert (body, deaths(props)[0]["reason"]) == (b"more", "maxlen")


def test_the_delivery_limit_counts_returns_and_dead_letters(conn, ch, names):
    dlq, q = names.queue(), names.queue()
    ch.queue_declare(dlq, durable=True)
    ch.queue_declare(q, durable=True, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 1,
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    ch.basic_publish("", q, b"poison", pika.BasicProperties(delivery_mode=2))
    method, props, _ = get_one(ch, q)
    # RabbitMQ's quorum queue says 0 on a first delivery; Lagomorph sends the publisher's
    # headers untouched until the first return.
    assert (props.headers or {}).get("x-delivery-count", 0) == 0
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, props, _ = get_one(ch, q)
    assert method.redelivered and props.headers["x-delivery-count"] == 1
    ch.basic_nack(method.delivery_tag, requeue=True)
    _, props, body = get_one(ch, dlq, auto_ack=True)
    assert (body, deaths(props)[0]["reason"]) == (b"poison", "delivery_limit")
