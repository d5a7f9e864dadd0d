#!/usr/bin/env python3
"""Queue TTL and dead-lettering under load, side by side: Lagomorph, RabbitMQ 3.10 and (when its
build is there) LavinMQ, one broker at a time, fresh data directory each.

For each broker:
  1. `backlog`: lagomorph-perf --backlog N (fill N x 16 B, then drain): the drain rate to
     compare the dead-lettering rate with.
  2. `expiry`: N x 16 B messages published with confirms into a queue with x-message-ttl=T and
     a dead-letter exchange that routes them into a second queue. Sampled every 50 ms: the
     dead-letter queue's count (passive queue.declare) and the broker's RSS. Reported: the fill
     rate, the dead-lettering rate (N over the time from the first dead letter to the last),
     how late the last message arrived after its due time (end of fill + T), and peak RSS.

    bench/ttl_expiry.py [--messages 1000000] [--ttl-ms 20000] [--brokers lagomorph,rabbitmq,lavinmq]

Loopback only; every wait is bounded. Writes a JSON line per broker to stdout and a Markdown
table to stderr.
"""

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "interop", "record"))
import amqp_raw as raw  # noqa: E402

PERF = os.path.join(ROOT, "target", "release", "lagomorph-perf")
LAGO = os.path.join(ROOT, "target", "release", "lagomorph")
LAVIN = os.path.join(ROOT, "..", "shared", "anchors", "lavinmq-1.0.1")
PORTS = {"lagomorph": 5820, "rabbitmq": 5821, "lavinmq": 5822}


def wait_port(port, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


class Broker:
    def __init__(self, kind):
        self.kind, self.port, self.proc, self.pid = kind, PORTS[kind], None, None
        self.dir = tempfile.mkdtemp(prefix=f"ttlx-{kind}-")

    def start(self):
        if self.kind == "lagomorph":
            self.proc = subprocess.Popen(
                [LAGO, "--data-dir", self.dir, "--listen", f"127.0.0.1:{self.port}",
                 "--management-listen", f"127.0.0.1:{self.port + 10000}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.pid = self.proc.pid
        elif self.kind == "lavinmq":
            conf = os.path.join(self.dir, "conf")
            os.makedirs(conf)
            self.proc = subprocess.Popen(
                [LAVIN, "-D", os.path.join(self.dir, "data"), "--bind", "127.0.0.1",
                 "--amqp-port", str(self.port), "--http-port", str(self.port + 10000),
                 "--amqps-port", "-1", "--https-port", "-1"],
                env=dict(os.environ, CONFIGURATION_DIRECTORY=conf),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.pid = self.proc.pid
        else:
            subprocess.run([os.path.join(ROOT, "interop", "rabbitmq-ref.sh"), "start",
                            str(self.port)], check=True, stdout=subprocess.DEVNULL)
            with open(f"/tmp/rabbitmq-ref-{self.port}/pid") as f:
                self.pid = int(f.read().strip())
        if not wait_port(self.port, 60):
            raise RuntimeError(f"{self.kind} did not listen on {self.port}")

    def stop(self):
        if self.kind == "rabbitmq":
            subprocess.run([os.path.join(ROOT, "interop", "rabbitmq-ref.sh"), "stop",
                            str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["rm", "-rf", self.dir])

    def rss_kb(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0


def declare(conn, name, passive=False, args=b""):
    """queue.declare on channel 1; the message count."""
    payload = (struct.pack(">H", 0) + raw.shortstr(name) + raw.bits(passive, False, False, False, False)
               + raw.longstr(args))
    conn.send(raw.method(1, 50, 10, payload))
    f = conn.recv(10.0)
    if f is None or f[0] != raw.FRAME_METHOD or struct.unpack(">HH", f[2][:4]) != (50, 11):
        raise RuntimeError(f"queue.declare {name}: {f and raw.describe(*f)}")
    p = f[2][4:]
    n = p[0]
    count, _consumers = struct.unpack(">II", p[1 + n:9 + n])
    return count


def perf(port, *args):
    uri = f"amqp://guest:guest@127.0.0.1:{port}/%2f"
    out = subprocess.run([PERF, "--uri", uri, "--json", "--quiet", *args], capture_output=True,
                         text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"lagomorph-perf {args}: {out.stderr[-500:]}")
    return json.loads(out.stdout)


def run_broker(kind, n, ttl_ms):
    b = Broker(kind)
    b.start()
    try:
        backlog = perf(b.port, "-x", "1", "-y", "1", "-q", "1000", "--backlog", str(n),
                       "--queue-prefix", "ttlx-backlog")
        drain_rate = backlog["backlog"]["drain_rate"] if "backlog" in backlog else None

        conn = raw.Conn("127.0.0.1", b.port, timeout=10)
        conn.handshake()
        conn.open_channel(1)
        dlq = "ttlx-dlq"
        declare(conn, dlq)
        samples = []  # (t, dead-lettered, rss_kb)
        stop = threading.Event()
        peak = [b.rss_kb()]

        def sample():
            while not stop.is_set():
                c = declare(conn, dlq, passive=True)
                rss = b.rss_kb()
                peak[0] = max(peak[0], rss)
                samples.append((time.monotonic(), c, rss))
                if c >= n:
                    return
                time.sleep(0.05)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        t_fill0 = time.monotonic()
        fill = perf(b.port, "-x", "1", "-y", "0", "-c", "1000", "-C", str(n), "--keep-queues",
                    "--queue-prefix", "ttlx",
                    "--queue-arg", f"x-message-ttl={ttl_ms}",
                    "--queue-arg", "x-dead-letter-exchange=",
                    "--queue-arg", f"x-dead-letter-routing-key={dlq}")
        t_fill1 = time.monotonic()
        t.join(ttl_ms / 1000 + 600)
        stop.set()
        conn.close()
        done = [s for s in samples if s[1] >= n]
        first = next((s for s in samples if s[1] > 0), None)
        res = {
            "broker": kind, "messages": n, "ttl_ms": ttl_ms,
            "drain_rate": drain_rate,
            "fill_rate": round(n / (t_fill1 - t_fill0)),
            "publish_rate": fill.get("publish_rate"),
            "peak_rss_kb": peak[0],
            "dead_lettered": samples[-1][1] if samples else 0,
        }
        if done and first:
            res["dead_letter_rate"] = round(n / max(done[0][0] - first[0], 0.05))
            res["last_late_ms"] = round((done[0][0] - (t_fill1 + ttl_ms / 1000)) * 1000)
        return res
    finally:
        b.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--ttl-ms", type=int, default=20_000)
    ap.add_argument("--brokers", default="lagomorph,rabbitmq,lavinmq")
    a = ap.parse_args()
    rows = []
    for kind in a.brokers.split(","):
        if kind == "lavinmq" and not os.access(LAVIN, os.X_OK):
            print("ttl_expiry: no LavinMQ build; skipped", file=sys.stderr)
            continue
        print(f"ttl_expiry: {kind} ...", file=sys.stderr)
        try:
            r = run_broker(kind, a.messages, a.ttl_ms)
        except Exception as e:  # one broker's failure is reported, the others still run
            r = {"broker": kind, "error": str(e)[:300]}
        print(json.dumps(r), flush=True)
        rows.append(r)
    print("\n| broker | fill msg/s | dead-lettered msg/s | drain msg/s (backlog) | dead-letter / drain "
          "| last one late by | peak RSS |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        if "error" in r:
            print(f"| {r['broker']} | error: {r['error']} |||||", file=sys.stderr)
            continue
        dl, dr = r.get("dead_letter_rate"), r.get("drain_rate")
        ratio = f"{dl / dr:.2f}" if dl and dr else "-"
        print(f"| {r['broker']} | {r['fill_rate']:,} | {dl or '-':,} | {round(dr or 0):,} | {ratio} "
              f"| {r.get('last_late_ms', '-')} ms | {r['peak_rss_kb'] / 1024:.0f} MB |", file=sys.stderr)


if __name__ == "__main__":
    main()
