"""basic.get, and ack / nack / reject with and without requeue, `multiple`, and the
redelivered flag."""

import pytest
from pika.exceptions import ChannelClosedByBroker

from amqp_helpers import bodies, consume_n, get_one, ready_count, wait_ready


@pytest.fixture
def queue_with(conn, names):
    """Declare a queue and put the given bodies on it through a confirm channel, so
    they are all enqueued when this returns."""

    def make(*messages):
        queue = names.queue()
        publisher = conn.channel()
        publisher.queue_declare(queue)
        publisher.confirm_delivery()
        for body in messages:
            publisher.basic_publish("", queue, body)
        publisher.close()
        return queue

    return make


def test_get_ok_reports_remaining_count_then_get_empty(ch, queue_with):
    queue = queue_with(b"m0", b"m1", b"m2")
    for i, remaining in enumerate((2, 1, 0)):
        method, _, body = ch.basic_get(queue, auto_ack=True)
        assert method is not None, f"get #{i} returned get-empty"
        assert body == f"m{i}".encode()
        assert method.message_count == remaining
        assert method.redelivered is False
        assert method.exchange == ""
        assert method.routing_key == queue
        assert method.delivery_tag == i + 1
    assert ch.basic_get(queue, auto_ack=True) == (None, None, None)


def test_get_empty_on_fresh_queue(ch, names):
    queue = names.queue()
    ch.queue_declare(queue)
    assert ch.basic_get(queue) == (None, None, None)


def test_ack_removes_and_channel_close_requeues_the_unacked(conn, queue_with):
    queue = queue_with(b"acked", b"unacked")
    ch = conn.channel()
    first, _, _ = ch.basic_get(queue)
    second, _, _ = ch.basic_get(queue)
    assert (first.delivery_tag, second.delivery_tag) == (1, 2)
    assert ready_count(ch, queue) == 0
    ch.basic_ack(first.delivery_tag)
    ch.close()
    observer = conn.channel()
    assert wait_ready(observer, queue, 1) == 1
    method, _, body = get_one(observer, queue, auto_ack=True)
    assert body == b"unacked"
    assert method.redelivered is True


def test_nack_with_requeue_redelivers_in_place(ch, queue_with):
    queue = queue_with(b"first", b"second")
    method, _, body = ch.basic_get(queue)
    assert (body, method.redelivered) == (b"first", False)
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, _, body = get_one(ch, queue)
    assert (body, method.redelivered) == (b"first", True)
    ch.basic_ack(method.delivery_tag)
    method, _, body = get_one(ch, queue)
    assert (body, method.redelivered) == (b"second", False)
    ch.basic_ack(method.delivery_tag)
    assert ready_count(ch, queue) == 0


def test_nack_without_requeue_drops(ch, queue_with):
    queue = queue_with(b"dropped", b"kept")
    method, _, _ = ch.basic_get(queue)
    ch.basic_nack(method.delivery_tag, requeue=False)
    method, _, body = get_one(ch, queue)
    assert (body, method.redelivered, method.message_count) == (b"kept", False, 0)
    ch.basic_ack(method.delivery_tag)
    assert ch.basic_get(queue) == (None, None, None)


def test_reject_with_requeue_redelivers(ch, queue_with):
    queue = queue_with(b"again")
    method, _, _ = ch.basic_get(queue)
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, _, body = get_one(ch, queue)
    assert (body, method.redelivered) == (b"again", True)
    ch.basic_ack(method.delivery_tag)
    assert ready_count(ch, queue) == 0


def test_reject_without_requeue_drops(ch, queue_with):
    queue = queue_with(b"gone", b"stays")
    method, _, _ = ch.basic_get(queue)
    ch.basic_reject(method.delivery_tag, requeue=False)
    method, _, body = get_one(ch, queue, auto_ack=True)
    assert (body, method.redelivered) == (b"stays", False)
    assert ch.basic_get(queue) == (None, None, None)


def test_ack_multiple_acks_up_to_and_including_the_tag(conn, ch, queue_with):
    queue = queue_with(b"m1", b"m2", b"m3")
    tags = [ch.basic_get(queue)[0].delivery_tag for _ in range(3)]
    assert tags == [1, 2, 3]
    ch.basic_ack(2, multiple=True)  # acks 1 and 2, not 3
    ch.basic_ack(3)  # still outstanding, so no error
    assert ready_count(ch, queue) == 0  # synchronous round trip: the acks were accepted
    # Tag 1 was covered by the multiple ack, so acking it again is an unknown tag.
    ch.basic_ack(1)
    with pytest.raises(ChannelClosedByBroker) as err:
        ready_count(ch, queue)
    assert err.value.reply_code == 406
    assert err.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 1"
    assert conn.is_open


def test_nack_multiple_with_requeue_returns_all_in_order(ch, queue_with):
    queue = queue_with(b"m1", b"m2", b"m3")
    for _ in range(3):
        assert ch.basic_get(queue)[0] is not None
    ch.basic_nack(3, multiple=True, requeue=True)
    again = [get_one(ch, queue) for _ in range(3)]
    assert bodies(again) == [b"m1", b"m2", b"m3"]
    assert all(m.redelivered for m, _, _ in again)
    assert [m.delivery_tag for m, _, _ in again] == [4, 5, 6]
    ch.basic_ack(6, multiple=True)
    assert ch.basic_get(queue) == (None, None, None)


def test_nack_multiple_without_requeue_drops_all(ch, queue_with):
    queue = queue_with(b"m1", b"m2", b"m3", b"m4")
    for _ in range(3):
        ch.basic_get(queue)
    ch.basic_nack(3, multiple=True, requeue=False)
    method, _, body = get_one(ch, queue, auto_ack=True)
    assert (body, method.message_count) == (b"m4", 0)
    assert ch.basic_get(queue) == (None, None, None)


def test_consumer_manual_ack_and_requeue_to_consumer(ch, queue_with):
    queue = queue_with(b"a", b"b")
    ch.basic_qos(prefetch_count=10)
    got = consume_n(ch, queue, 2, auto_ack=False)
    assert bodies(got) == [b"a", b"b"]
    (ma, _, _), (mb, _, _) = got
    assert not ma.redelivered and not mb.redelivered
    ch.basic_ack(ma.delivery_tag)
    ch.basic_nack(mb.delivery_tag, requeue=True)
    redelivered = consume_n(ch, queue, 1, auto_ack=False)
    assert bodies(redelivered) == [b"b"]
    assert redelivered[0][0].redelivered is True
    ch.basic_ack(redelivered[0][0].delivery_tag)
    assert ready_count(ch, queue) == 0


def test_prefetch_limits_unacked_deliveries(conn, ch, queue_with):
    queue = queue_with(*[f"p{i}".encode() for i in range(5)])
    ch.basic_qos(prefetch_count=2)
    received = []
    ch.basic_consume(queue, lambda c, m, p, b: received.append(m))
    for _ in range(50):
        if len(received) >= 2:
            break
        conn.process_data_events(time_limit=0.1)
    assert len(received) == 2
    # With the window full, three messages stay ready on the queue.
    assert ready_count(ch, queue) == 3
    ch.basic_ack(received[1].delivery_tag, multiple=True)
    for _ in range(50):
        if len(received) >= 4:
            break
        conn.process_data_events(time_limit=0.1)
    assert [m.delivery_tag for m in received] == [1, 2, 3, 4]
    assert ready_count(ch, queue) == 1
