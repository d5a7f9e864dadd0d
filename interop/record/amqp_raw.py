"""A raw AMQP 0-9-1 client over a plain socket, for recording what a broker answers to input
that no client library will send (bad tune values, methods on channel 0, oversized frames,
frames after connection.close).

Standard library only. Every read is bounded in time; nothing sleeps to synchronise.
"""

import socket
import struct
import time

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE

#: (class, method) -> name, for the methods a broker sends in these recordings.
NAMES = {
    (10, 10): "connection.start",
    (10, 30): "connection.tune",
    (10, 41): "connection.open-ok",
    (10, 50): "connection.close",
    (10, 51): "connection.close-ok",
    (10, 60): "connection.blocked",
    (20, 11): "channel.open-ok",
    (20, 20): "channel.flow",
    (20, 21): "channel.flow-ok",
    (20, 40): "channel.close",
    (20, 41): "channel.close-ok",
    (40, 11): "exchange.declare-ok",
    (40, 21): "exchange.delete-ok",
    (40, 31): "exchange.bind-ok",
    (40, 51): "exchange.unbind-ok",
    (50, 11): "queue.declare-ok",
    (50, 21): "queue.bind-ok",
    (50, 41): "queue.delete-ok",
    (50, 51): "queue.unbind-ok",
    (60, 50): "basic.return",
    (60, 80): "basic.ack",
}


def shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("B", len(b)) + b


def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def table(d=None):
    """A field table of long-string values (all these recordings need)."""
    body = b""
    for k, v in (d or {}).items():
        body += shortstr(k) + b"S" + longstr(v)
    return longstr(body)


def bits(*flags):
    n = 0
    for i, f in enumerate(flags):
        if f:
            n |= 1 << i
    return struct.pack("B", n)


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + bytes([FRAME_END])


def method(channel, class_id, method_id, args=b""):
    return frame(FRAME_METHOD, channel, struct.pack(">HH", class_id, method_id) + args)


# The methods the recordings send, by name.
def start_ok(user="guest", password="guest", properties=None):
    props = properties or {"product": "lagomorph-record"}
    return method(0, 10, 11, table(props) + shortstr("PLAIN")
                  + longstr(f"\0{user}\0{password}") + shortstr("en_US"))


def tune_ok(channel_max, frame_max, heartbeat):
    return method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, heartbeat))


def connection_open(vhost="/"):
    return method(0, 10, 40, shortstr(vhost) + shortstr("") + bits(False))


def connection_close(code=200, text="bye", class_id=0, method_id=0):
    return method(0, 10, 50, struct.pack(">H", code) + shortstr(text)
                  + struct.pack(">HH", class_id, method_id))


def connection_close_ok():
    return method(0, 10, 51)


def channel_open(ch):
    return method(ch, 20, 10, shortstr(""))


def channel_flow(ch, active):
    return method(ch, 20, 20, bits(active))


def channel_close_ok(ch):
    return method(ch, 20, 41)


def exchange_declare(ch, name, kind="direct", passive=False, durable=False, auto_delete=False):
    return method(ch, 40, 10, struct.pack(">H", 0) + shortstr(name) + shortstr(kind)
                  + bits(passive, durable, auto_delete, False, False) + table())


def exchange_delete(ch, name):
    return method(ch, 40, 20, struct.pack(">H", 0) + shortstr(name) + bits(False, False))


def exchange_bind(ch, destination, source, key):
    return method(ch, 40, 30, struct.pack(">H", 0) + shortstr(destination) + shortstr(source)
                  + shortstr(key) + bits(False) + table())


def exchange_unbind(ch, destination, source, key):
    return method(ch, 40, 40, struct.pack(">H", 0) + shortstr(destination) + shortstr(source)
                  + shortstr(key) + bits(False) + table())


def queue_declare(ch, name, exclusive=False, auto_delete=False):
    return method(ch, 50, 10, struct.pack(">H", 0) + shortstr(name)
                  + bits(False, False, exclusive, auto_delete, False) + table())


def queue_bind(ch, queue, exchange, key):
    return method(ch, 50, 20, struct.pack(">H", 0) + shortstr(queue) + shortstr(exchange)
                  + shortstr(key) + bits(False) + table())


def queue_unbind(ch, queue, exchange, key):
    return method(ch, 50, 50, struct.pack(">H", 0) + shortstr(queue) + shortstr(exchange)
                  + shortstr(key) + table())


def queue_delete(ch, name):
    return method(ch, 50, 40, struct.pack(">H", 0) + shortstr(name) + bits(False, False, False))


def basic_publish(ch, exchange, key):
    return method(ch, 60, 40, struct.pack(">H", 0) + shortstr(exchange) + shortstr(key)
                  + bits(False, False))


def content_header(ch, body_size, class_id=60):
    return frame(FRAME_HEADER, ch, struct.pack(">HHQH", class_id, 0, body_size, 0))


def body(ch, data):
    return frame(FRAME_BODY, ch, data)


def publish(ch, exchange, key, data):
    """basic.publish, its content header and one body frame."""
    return basic_publish(ch, exchange, key) + content_header(ch, len(data)) + body(ch, data)


def heartbeat():
    return frame(FRAME_HEARTBEAT, 0, b"")


def describe(kind, channel, payload):
    """A frame as a JSON-friendly dict: methods by name with the fields these recordings read."""
    if kind != FRAME_METHOD:
        return {"frame": {FRAME_HEADER: "header", FRAME_BODY: "body", FRAME_HEARTBEAT: "heartbeat"}
                .get(kind, kind), "channel": channel}
    class_id, method_id = struct.unpack(">HH", payload[:4])
    name = NAMES.get((class_id, method_id), f"{class_id}.{method_id}")
    out = {"channel": channel, "method": name}
    args = payload[4:]
    if name in ("connection.close", "channel.close"):
        code, = struct.unpack(">H", args[:2])
        n = args[2]
        text = args[3:3 + n].decode()
        cid, mid = struct.unpack(">HH", args[3 + n:7 + n])
        out.update(reply_code=code, reply_text=text, class_id=cid, method_id=mid)
    elif name == "connection.tune":
        cm, fm, hb = struct.unpack(">HIH", args[:8])
        out.update(channel_max=cm, frame_max=fm, heartbeat=hb)
    elif name in ("channel.flow", "channel.flow-ok"):
        out["active"] = bool(args[0] & 1)
    elif name == "queue.declare-ok":
        n = args[0]
        out["message_count"], out["consumer_count"] = struct.unpack(">II", args[1 + n:9 + n])
    elif name == "connection.start":
        props = decode_table(args[2:])[0]
        out["product"] = props.get("product")
        out["version"] = props.get("version")
    return out


def decode_table(b):
    """(dict, rest) from a field table at the start of `b` (the value types brokers send)."""
    size, = struct.unpack(">I", b[:4])
    data, rest = b[4:4 + size], b[4 + size:]
    out = {}
    while data:
        n = data[0]
        key = data[1:1 + n].decode()
        value, data = decode_value(data[1 + n:])
        out[key] = value
    return out, rest


def decode_value(b):
    t, b = chr(b[0]), b[1:]
    if t == "S":
        n, = struct.unpack(">I", b[:4])
        return b[4:4 + n].decode(errors="replace"), b[4 + n:]
    if t == "t":
        return bool(b[0]), b[1:]
    if t == "F":
        return decode_table(b)
    if t == "I":
        return struct.unpack(">i", b[:4])[0], b[4:]
    if t == "l":
        return struct.unpack(">q", b[:8])[0], b[8:]
    raise ValueError(f"field type {t!r} not handled")


class Conn:
    """One raw connection. `events` lists what the broker sent, with times since `mark()`."""

    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.t0 = time.monotonic()
        self.eof = False

    def mark(self):
        self.t0 = time.monotonic()

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """Sends and reports what the socket said: "ok" or the error's name."""
        try:
            self.sock.sendall(data)
            return "ok"
        except OSError as e:
            return type(e).__name__

    def _frame(self):
        if len(self.buf) < 7:
            return None
        kind, channel, size = struct.unpack(">BHI", self.buf[:7])
        if len(self.buf) < 8 + size:
            return None
        payload = self.buf[7:7 + size]
        self.buf = self.buf[8 + size:]
        return kind, channel, payload

    def recv(self, timeout=5.0, skip_heartbeats=True):
        """The next frame as (kind, channel, payload); None on EOF or after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._frame()
            if f is not None:
                if skip_heartbeats and f[0] == FRAME_HEARTBEAT:
                    continue
                return f
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                data = b""
            if not data:
                self.eof = True
                self.eof_at = round(time.monotonic() - self.t0, 1)
            self.buf += data

    def recv_method(self, timeout=5.0):
        f = self.recv(timeout)
        return None if f is None else describe(*f)

    def collect(self, timeout):
        """Everything the broker sends within `timeout` s or until it closes the socket:
        described frames, then {"socket": "closed", "after_s": t} or {"socket": "open"}."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv(max(0.0, deadline - time.monotonic()))
            if f is None:
                break
            out.append(describe(*f))
        if self.eof:
            out.append({"socket": "closed", "after_s": self.eof_at})
        else:
            out.append({"socket": "open", "waited_s": timeout})
        return out

    def handshake(self, channel_max=None, frame_max=None, heartbeat=0, vhost="/",
                  properties=None):
        """Protocol header to open-ok. Tune values default to the broker's offer."""
        self.send(PROTOCOL_HEADER)
        start = self.recv_method()
        assert start and start["method"] == "connection.start", start
        self.send(start_ok(properties=properties))
        tune = self.recv_method()
        assert tune and tune["method"] == "connection.tune", tune
        self.tune = tune
        cm = tune["channel_max"] if channel_max is None else channel_max
        fm = tune["frame_max"] if frame_max is None else frame_max
        self.send(tune_ok(cm, fm, heartbeat))
        self.send(connection_open(vhost))
        return self.recv_method()

    def open_channel(self, ch):
        self.send(channel_open(ch))
        got = self.recv_method()
        assert got and got["method"] == "channel.open-ok", got
        return got

    def call(self, data, timeout=5.0):
        """Sends and returns the next method (described), or None."""
        self.send(data)
        return self.recv_method(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
