"""aio-pika against the broker at AMQP_URL: publish/consume, confirms, returns, unbind
cleanup after the queue is gone, and close while publishing. Written against RabbitMQ
3.10.8; Lagomorph must pass it unchanged."""

import asyncio

import aio_pika
import aiormq
import pytest
from conftest import WAIT_SECONDS, cleanup, connect, run, unique


def test_publish_consume():
    async def body():
        q_name = unique("q")
        conn = await connect()
        try:
            ch = await conn.channel()
            q = await ch.declare_queue(q_name)
            for i in range(20):
                await ch.default_exchange.publish(
                    aio_pika.Message(f"m{i}".encode(), headers={"n": i}, content_type="text/plain",
                                     correlation_id=f"c{i}"),
                    routing_key=q_name,
                )
            got = []
            async with q.iterator() as it:
                async for msg in it:
                    async with msg.process():
                        got.append((msg.body, msg.headers["n"], msg.content_type, msg.correlation_id))
                    if len(got) == 20:
                        break
            assert got == [(f"m{i}".encode(), i, "text/plain", f"c{i}") for i in range(20)]
            assert (await ch.declare_queue(q_name, passive=True)).declaration_result.message_count == 0
        finally:
            await conn.close()
            await cleanup(queues=[q_name])

    run(body())


def test_confirms():
    async def body():
        q_name = unique("q")
        conn = await connect()
        try:
            ch = await conn.channel(publisher_confirms=True)
            await ch.declare_queue(q_name, durable=True)
            msg = aio_pika.Message(b"p", delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            confirms = await asyncio.gather(
                *(ch.default_exchange.publish(msg, routing_key=q_name) for _ in range(50))
            )
            assert all(isinstance(c, aiormq.spec.Basic.Ack) for c in confirms), confirms
            q = await ch.declare_queue(q_name, passive=True)
            assert q.declaration_result.message_count == 50
        finally:
            await conn.close()
            await cleanup(queues=[q_name])

    run(body())


def test_returns():
    async def body():
        conn = await connect()
        try:
            key = unique("unroutable")
            # With confirms and on_return_raises, an unroutable mandatory publish raises.
            ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
            x = await ch.get_exchange("amq.direct")
            with pytest.raises(aio_pika.exceptions.DeliveryError) as e:
                await x.publish(aio_pika.Message(b"r", message_id="m1"), routing_key=key,
                                mandatory=True)
            assert e.value.frame.reply_code == 312
            assert e.value.frame.reply_text == "NO_ROUTE"
            # Without on_return_raises, the returned message reaches the channel's return
            # callbacks (aiormq matches returns to publishes by message_id, in confirm mode).
            ch2 = await conn.channel(publisher_confirms=True, on_return_raises=False)
            returned = asyncio.get_running_loop().create_future()
            ch2.return_callbacks.add(lambda _ch, m: returned.done() or returned.set_result(m))
            x2 = await ch2.get_exchange("amq.direct")
            await x2.publish(aio_pika.Message(b"r2", message_id="m2"), routing_key=key,
                             mandatory=True)
            m = await asyncio.wait_for(returned, WAIT_SECONDS)
            assert (m.body, m.message_id, m.routing_key) == (b"r2", "m2", key)
        finally:
            await conn.close()

    run(body())


def test_unbind_cleanup_after_the_queue_is_gone():
    async def body():
        q_name, x_name = unique("q"), unique("x")
        conn = await connect()
        try:
            ch = await conn.channel()
            x = await ch.declare_exchange(x_name, aio_pika.ExchangeType.DIRECT)
            q = await ch.declare_queue(q_name)
            await q.bind(x, "k")
            await q.delete()
            # A client's cleanup: RabbitMQ answers unbind-ok for what no longer exists.
            await q.unbind(x, "k")
            other = await ch.declare_exchange(unique("x"), aio_pika.ExchangeType.DIRECT,
                                              auto_delete=True)
            await other.delete()
            await x.unbind(other, "k")
            # The channel is still open.
            assert not ch.is_closed
            await ch.declare_queue(exclusive=True)
        finally:
            await conn.close()
            await cleanup(queues=[q_name], exchanges=[x_name])

    run(body())


def test_close_while_publishing():
    async def body():
        q_name = unique("q")
        try:
            for _ in range(10):
                conn = await connect()
                ch = await conn.channel(publisher_confirms=False)
                await ch.declare_queue(q_name)
                started = asyncio.Event()

                async def publisher():
                    payload = aio_pika.Message(b"x" * 4096)
                    for i in range(1_000_000):
                        if i == 100:
                            started.set()
                        await ch.default_exchange.publish(payload, routing_key=q_name)

                task = asyncio.create_task(publisher())
                await asyncio.wait_for(started.wait(), WAIT_SECONDS)
                # Closing answers cleanly while the other task still publishes.
                await asyncio.wait_for(conn.close(), WAIT_SECONDS)
                done, _ = await asyncio.wait([task], timeout=WAIT_SECONDS)
                assert done, "publisher still running after the close"
                exc = task.exception()
                assert exc is not None, "publisher finished without seeing the close"
                assert not isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)
                assert conn.is_closed
        finally:
            await cleanup(queues=[q_name])

    run(body())
