#!/usr/bin/env python3
"""Records RabbitMQ 3.10's disk and memory alarm answers into
tests/fixtures/rabbitmq-3.10/alarms.json: the connection.blocked reasons (disk alone, memory and
disk together; RabbitMQ 3.10 sends connection.blocked only once a connection publishes), what a
blocked connection is told when a second alarm is added or one of two is cleared, and the alarm
health checks. The alarms are set with rabbitmqctl
(set_disk_free_limit, set_vm_memory_high_watermark) on a node started by this script:
    /tmp/venv-tls/bin/python interop/record/alarms.py 5716 > tests/fixtures/rabbitmq-3.10/alarms.json
Every wait is bounded in time; nothing sleeps to synchronise.
"""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pika

PORT = int(sys.argv[1])
HTTP = PORT + 10000
HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "..", "rabbitmq-ref.sh")


def ctl(*args):
    subprocess.run([REF, "ctl", str(PORT), *args], check=True, capture_output=True)


def get(path):
    req = urllib.request.Request(f"http://127.0.0.1:{HTTP}{path}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return {"status": r.status, "body": json.loads(r.read())}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": json.loads(e.read())}


class Watched:
    """A pika connection that records connection.blocked / unblocked as they arrive."""

    def __init__(self):
        self.events = []
        self.conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", PORT, connection_attempts=1))
        self.conn.add_on_connection_blocked_callback(
            lambda _c, f: self.events.append(["blocked", f.method.reason]))
        self.conn.add_on_connection_unblocked_callback(
            lambda _c, _f: self.events.append(["unblocked"]))
        self.ch = self.conn.channel()

    def publish(self):
        self.ch.basic_publish("", "nowhere", b"x")

    def wait(self, count, seconds=15):
        """Processes events until `count` have arrived or `seconds` pass."""
        deadline = time.monotonic() + seconds
        while len(self.events) < count and time.monotonic() < deadline:
            self.conn.process_data_events(time_limit=0.2)
        return list(self.events)


def mechanisms():
    """connection.start's mechanisms with the default configuration."""
    with socket.create_connection(("127.0.0.1", PORT), timeout=5) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        data = b""
        while len(data) < 7 or len(data) < 8 + struct.unpack(">I", data[3:7])[0]:
            data += s.recv(65536)
        payload = data[7:]
        off = 4 + 2
        (tlen,) = struct.unpack(">I", payload[off:off + 4])
        off += 4 + tlen
        (mlen,) = struct.unpack(">I", payload[off:off + 4])
        return payload[off + 4:off + 4 + mlen].decode()


out = {}
subprocess.run([REF, "start", str(PORT), "--management"], check=True, stdout=subprocess.DEVNULL)
try:
    out["mechanisms_default_config"] = mechanisms()
    out["health_no_alarm"] = get("/api/health/checks/alarms")
    a = Watched()
    idle = Watched()
    ctl("set_disk_free_limit", "1000000GB")
    out["disk_alarm_events_idle_connection"] = idle.wait(1, seconds=5)
    a.publish()
    out["disk_alarm_events_after_publish"] = a.wait(1)
    out["disk_alarm_health_alarms"] = get("/api/health/checks/alarms")
    out["disk_alarm_health_local_alarms"] = get("/api/health/checks/local-alarms")
    out["disk_alarm_nodes_flags"] = {k: v for k, v in get("/api/nodes")["body"][0].items()
                                     if k in ("disk_free_alarm", "mem_alarm", "disk_free_limit")}
    ctl("set_vm_memory_high_watermark", "absolute", "1")
    out["both_alarms_events_on_blocked_connection"] = a.wait(2, seconds=5)
    b = Watched()
    b.publish()
    out["both_alarms_new_connection_events_after_publish"] = b.wait(1)
    out["both_alarms_health_alarms"] = get("/api/health/checks/alarms")
    ctl("set_vm_memory_high_watermark", "0.4")
    out["memory_cleared_disk_still_set_events"] = a.wait(2, seconds=5)
    ctl("set_disk_free_limit", "50MB")
    out["all_cleared_events"] = a.wait(2)
    out["all_cleared_events_second_connection"] = b.wait(2)
    out["all_cleared_health_alarms"] = get("/api/health/checks/alarms")
finally:
    subprocess.run([REF, "stop", str(PORT)], check=False)

json.dump(out, sys.stdout, indent=2, sort_keys=True)
print()
