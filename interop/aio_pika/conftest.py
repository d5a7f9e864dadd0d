"""Fixtures for the aio-pika interop suite: each test is a coroutine run by `run`, with
uniquely named queues and exchanges that are deleted afterwards."""

import asyncio
import os
import uuid

import aio_pika

#: Broker under test; run.sh always sets it.
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

#: Upper bound for any single wait on the broker, in seconds.
WAIT_SECONDS = 5.0


def unique(kind):
    """A name no other test (or earlier run) uses."""
    return f"interop-aio-{kind}-{uuid.uuid4().hex}"


async def connect():
    """A connection to AMQP_URL with a bounded connect."""
    return await asyncio.wait_for(aio_pika.connect(AMQP_URL), WAIT_SECONDS)


async def cleanup(queues=(), exchanges=()):
    """Deletes what a test made, on a connection of its own (missing things are fine)."""
    conn = await connect()
    try:
        ch = await conn.channel()
        for q in queues:
            await ch.queue_delete(q)
        for x in exchanges:
            await ch.exchange_delete(x)
    finally:
        await conn.close()


def run(coro):
    """Runs a test coroutine, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, 30))
