"""Fixtures for the pika interop suite: a connection, a channel, and uniquely named
queues/exchanges that are deleted after each test."""

import contextlib

import pika
import pytest

from amqp_helpers import connection_params, unique


@pytest.fixture
def conn():
    """A fresh blocking connection to AMQP_URL, closed after the test."""
    connection = pika.BlockingConnection(connection_params())
    yield connection
    if connection.is_open:
        connection.close()


@pytest.fixture
def ch(conn):
    """A channel on `conn`."""
    return conn.channel()


class Names:
    """Hands out unique queue/exchange names and remembers them for cleanup."""

    def __init__(self):
        self.queues = []
        self.exchanges = []

    def queue(self):
        name = unique("q")
        self.queues.append(name)
        return name

    def exchange(self):
        name = unique("x")
        self.exchanges.append(name)
        return name


@pytest.fixture
def names():
    """Unique names for this test; everything handed out is deleted afterwards on a
    separate connection (deleting a missing queue/exchange is not an error)."""
    registry = Names()
    yield registry
    if not registry.queues and not registry.exchanges:
        return
    with contextlib.suppress(Exception):
        cleanup = pika.BlockingConnection(connection_params())
        try:
            channel = cleanup.channel()
            for name in registry.queues:
                with contextlib.suppress(Exception):
                    if channel.is_closed:
                        channel = cleanup.channel()
                    channel.queue_delete(name)
            for name in registry.exchanges:
                with contextlib.suppress(Exception):
                    if channel.is_closed:
                        channel = cleanup.channel()
                    channel.exchange_delete(name)
        finally:
            cleanup.close()
