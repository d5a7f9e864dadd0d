"""Transactions: tx.select / tx.commit / tx.rollback for publishes and acks."""

from amqp_helpers import get_one, ready_count, wait_ready


def test_publishes_are_held_until_commit(conn, ch, names):
    queue = names.queue()
    ch.queue_declare(queue)
    observer = conn.channel()
    ch.tx_select()
    ch.basic_publish("", queue, b"t1")
    ch.basic_publish("", queue, b"t2")
    # Synchronous round trips on the publishing channel itself and on another one:
    # nothing is enqueued before the commit.
    assert ready_count(ch, queue) == 0
    assert ready_count(observer, queue) == 0
    ch.tx_commit()
    assert wait_ready(observer, queue, 2) == 2
    assert get_one(observer, queue, auto_ack=True)[2] == b"t1"
    assert get_one(observer, queue, auto_ack=True)[2] == b"t2"


def test_rollback_drops_publishes_and_channel_stays_transactional(ch, names):
    queue = names.queue()
    ch.queue_declare(queue)
    ch.tx_select()
    ch.basic_publish("", queue, b"rolled back")
    ch.tx_rollback()
    assert ready_count(ch, queue) == 0
    ch.basic_publish("", queue, b"committed")
    assert ready_count(ch, queue) == 0
    ch.tx_commit()
    assert wait_ready(ch, queue, 1) == 1
    assert get_one(ch, queue, auto_ack=True)[2] == b"committed"
    assert ch.basic_get(queue) == (None, None, None)


def _two_unacked(conn, names):
    """A queue holding two messages, both fetched (unacked) on a tx channel."""
    queue = names.queue()
    setup = conn.channel()
    setup.queue_declare(queue)
    setup.confirm_delivery()
    setup.basic_publish("", queue, b"first")
    setup.basic_publish("", queue, b"second")
    setup.close()
    ch = conn.channel()
    ch.tx_select()
    first = get_one(ch, queue)[0]
    second = get_one(ch, queue)[0]
    assert (first.delivery_tag, second.delivery_tag) == (1, 2)
    return queue, ch, first


def test_ack_in_tx_applies_on_commit(conn, names):
    queue, ch, first = _two_unacked(conn, names)
    ch.basic_ack(first.delivery_tag)
    ch.tx_commit()
    ch.close()  # the still-unacked second message goes back to the queue
    observer = conn.channel()
    assert wait_ready(observer, queue, 1) == 1
    method, _, body = get_one(observer, queue, auto_ack=True)
    assert (body, method.redelivered) == (b"second", True)


def test_ack_in_tx_is_discarded_by_rollback(conn, names):
    queue, ch, first = _two_unacked(conn, names)
    ch.basic_ack(first.delivery_tag)
    ch.tx_rollback()
    ch.close()  # the rolled-back ack never happened: both messages come back
    observer = conn.channel()
    assert wait_ready(observer, queue, 2) == 2
    got = [get_one(observer, queue, auto_ack=True) for _ in range(2)]
    assert [body for _, _, body in got] == [b"first", b"second"]
    assert all(method.redelivered for method, _, _ in got)
