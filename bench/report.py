#!/usr/bin/env python3
"""Renders docs/BENCHMARKS.md from the JSON lines bench/compare.sh collects.

Each line is either a tool-ceiling run ({"ceiling": name, "summary": ...}) or a broker run
({"scenario", "broker", "round", "rc", "wall_s", "cpu_s", "peak_rss_kb", "tool_cpu_s",
"summary"}), where "summary" is lagomorph-perf's --json output. Figures are medians over the
rounds; ratios compare the medians.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

SCENARIOS = [
    ("1", "16 B transient, 1 producer, 1 queue, 1 consumer, auto-ack"),
    ("2", "as 1 with manual acks (each message), prefetch 1000"),
    ("2d", "as 2 on a queue with a 60 s message TTL and a dead-letter exchange"),
    ("3", "as 1 with 4 KiB bodies"),
    ("4", "persistent, confirms (window 1000), durable queue, manual acks, prefetch 1000"),
    ("4k", "as 4 with 4 KiB bodies"),
    ("5", "fanout to 10 queues, 10 consumers, auto-ack"),
    ("6", "topic exchange with 1,000 bindings, auto-ack"),
    ("7a", "latency at 1,000 msg/s, auto-ack"),
    ("7b", "latency at 10,000 msg/s, auto-ack"),
    ("8", "backlog: fill N x 16 B with no consumer, then drain"),
    ("9", "1,000 connections with one channel each"),
    ("10", "100 queues, each with its own producer and consumer, auto-ack"),
]
TITLE = dict(SCENARIOS)
BROKERS = ("lagomorph", "rabbitmq", "lavinmq")
# Not a broker: `lagomorph-perf sink --relay`, run in 7a and 7b for the latency floor.
FLOOR = "relay"
NAME = {"lagomorph": "Lagomorph", "rabbitmq": "RabbitMQ", "lavinmq": "LavinMQ", FLOOR: "relay (floor)"}
# Scenarios with persistent messages: LavinMQ 1.0.1 confirms them without an fsync.
PERSISTENT = ("4", "4k")
FSYNC_NOTE = ("LavinMQ 1.0.1 confirms persistent messages without an fsync (msync MS_ASYNC on "
              "its mmapped segments only); Lagomorph confirms after fdatasync, RabbitMQ's "
              "classic queues after handing the data to the OS.")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_int(x):
    return "–" if x is None else f"{x:,.0f}"


def fmt(x, digits=1):
    return "–" if x is None else f"{x:,.{digits}f}"


def ratio(a, b, digits=1):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{digits}f}x"


def us(x):
    if x is None:
        return "–"
    if x >= 1_000_000:
        return f"{x / 1e6:.2f} s"
    if x >= 1000:
        return f"{x / 1000:.1f} ms"
    return f"{x:.0f} µs"


class Runs:
    """Runs of one scenario on one broker."""

    def __init__(self, rows):
        self.rows = rows
        self.ok = [r for r in rows if r["summary"] is not None]

    def s(self, key):
        return med([r["summary"].get(key) for r in self.ok])

    def lat(self, key):
        return med([r["summary"].get("latency", {}).get(key) for r in self.ok])

    def backlog(self, key):
        return med([(r["summary"].get("backlog") or {}).get(key) for r in self.ok])

    def cpu_us_per_msg(self):
        vals = []
        for r in self.ok:
            n = r["summary"].get("published") or r["summary"].get("opened")
            if n:
                vals.append(r["cpu_s"] * 1e6 / n)
        return med(vals)

    def tool_cpu_us_per_msg(self):
        vals = []
        for r in self.ok:
            n = r["summary"].get("published")
            if n and r.get("tool_cpu_s") is not None:
                vals.append(r["tool_cpu_s"] * 1e6 / n)
        return med(vals)

    def rss_mb(self):
        return med([r["peak_rss_kb"] / 1024 for r in self.rows])

    def max_rss_mb(self):
        return max((r["peak_rss_kb"] / 1024 for r in self.rows), default=None)


def machine():
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return model, os.cpu_count(), mem, f"{platform.system()} {platform.release()}"


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--time", type=float, default=10)
    ap.add_argument("--latency-time", type=float, default=30)
    ap.add_argument("--backlog", type=int, default=1_000_000)
    ap.add_argument("--rabbitmq", default="unknown")
    ap.add_argument("--lavinmq", default="")
    ap.add_argument("--command", default="bench/compare.sh")
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--load", default="")
    a = ap.parse_args()

    rows, ceilings = [], {}
    for line in open(a.results):
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        if "ceiling" in d:
            ceilings[d["ceiling"]] = d["summary"]
        else:
            rows.append(d)
    brokers = [b for b in BROKERS if any(r["broker"] == b for r in rows)]
    peers = [b for b in brokers if b != "lagomorph"]
    runs = {(s, b): Runs([r for r in rows if r["scenario"] == s and r["broker"] == b])
            for s, _ in SCENARIOS for b in BROKERS + (FLOOR,)}
    present = [s for s, _ in SCENARIOS if any(runs[(s, b)].rows for b in brokers)]

    L = lambda s: runs[(s, "lagomorph")]
    R = lambda s: runs[(s, "rabbitmq")]
    V = lambda s: runs[(s, "lavinmq")]
    has_v = "lavinmq" in brokers
    out = []
    w = out.append
    model, ncpu, mem, kernel = machine()
    commit = sh("git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD")
    erlang = sh("dpkg-query", "-W", "-f", "${Version}", "erlang-base")
    names = [NAME[b] for b in brokers]
    w("# Benchmarks: " + " vs ".join(names) + "\n")
    w(f"Generated by `{a.command.strip()}` on {datetime.date.today().isoformat()} "
      f"({a.elapsed // 60} min {a.elapsed % 60} s), with `lagomorph-perf` against every broker in "
      f"the same run, in turn ({', '.join(names)}), {a.rounds} round(s) per scenario, "
      f"{a.time:g} s per timed run ({a.latency_time:g} s for the latency scenarios 7a and 7b, "
      f"so that p99 rests on enough samples). Figures are medians over the rounds.\n")
    w("| | |\n|---|---|")
    w(f"| Machine | {model}, {ncpu} CPUs (`nproc`), {mem} RAM, {kernel} |")
    w(f"| Load average at start | {a.load or 'n/a'} (the machine is shared; absolute rates are noisy, ratios less so) |")
    w(f"| Lagomorph | commit `{commit or 'unknown'}`, release build |")
    w(f"| RabbitMQ | {a.rabbitmq} (Debian package, Erlang {erlang or 'unknown'}), default configuration, no plugins |")
    if has_v:
        w(f"| LavinMQ | {a.lavinmq or '1.0.1'} (`../shared/anchors`, release build), default configuration |")
    w("| Client | `lagomorph-perf` (this repository), on the same 2 cores as the broker |\n")
    w("**How the figures are taken.** Each broker runs on loopback with a fresh data directory "
      "(RabbitMQ: its own node name, ports, `RABBITMQ_MNESIA_BASE` and `RABBITMQ_LOG_BASE`). "
      "Each run gets a freshly started broker, and only one broker runs at a time. *CPU per message* is the broker "
      "process's utime + stime (`/proc/PID/stat`) over the run divided by the messages published "
      "(a fanout message counts once). *Peak RSS* is the larger of `VmHWM` (reset through "
      "`/proc/PID/clear_refs` before each run) and `VmRSS` sampled every 0.2 s. *Delivered msg/s* "
      "counts deliveries from the start of publishing to the last delivery, so a broker that "
      "buffers and drains late is not flattered. Latency is end to end, from the send time in "
      "the body to the consumer's read.\n")
    if has_v:
        w(f"**Durability differs.** {FSYNC_NOTE} Persistent figures (scenarios 4 and 4k) are marked †.\n")
    w("Reproduce: `bench/compare.sh` (full) or `bench/compare.sh --quick` "
      "(1 round, 5 s runs, 200k backlog). The script installs `rabbitmq-server` with apt when "
      "missing, uses LavinMQ from `../shared/anchors/lavinmq-1.0.1` when it is there, and stops "
      "only the processes it started. Raw per-run records are in `docs/BENCHMARKS.jsonl`.\n")

    def mark(s):
        return "†" if has_v and s in PERSISTENT else ""

    # Targets
    w("## Against the targets\n")
    w("| Target | Lagomorph | Peer | Ratio | Met |")
    w("|---|---|---|---|---|")

    def target_row(label, lv, rv, ratio_v, ok, fmt_v=fmt):
        w(f"| {label} | {fmt_v(lv)} | {fmt_v(rv)} | {ratio_v} | {'yes' if ok else ('no' if ok is not None else 'n/a')} |")

    cpu2 = lambda x: fmt(x, 2)
    for s, limit in [("1", 10), ("2", 10), ("5", 10), ("6", 10), ("10", 10), ("3", 5), ("4", 5), ("4k", 5)]:
        if s not in present:
            continue
        lv, rv = L(s).cpu_us_per_msg(), R(s).cpu_us_per_msg()
        ok = None if lv is None or rv is None else rv / lv >= limit
        target_row(f"({s}) broker CPU µs/msg ≤ 1/{limit} of RabbitMQ", lv, rv, ratio(rv, lv), ok, cpu2)
    for s, limit in [("1", 3), ("2", 3), ("5", 3), ("10", 3), ("4", 15), ("4k", 10)]:
        if s not in present:
            continue
        lv, rv = L(s).s("consume_rate"), R(s).s("consume_rate")
        ok = None if lv is None or rv is None or rv == 0 else lv / rv >= limit
        target_row(f"({s}) delivered msg/s ≥ {limit}x RabbitMQ", lv, rv, ratio(lv, rv), ok, fmt_int)
    for s in ("7a", "7b"):
        if s not in present:
            continue
        lv, rv = L(s).lat("p99_us"), R(s).lat("p99_us")
        ok = None if lv is None or rv is None else lv <= rv / 2
        target_row(f"({s}) p99 latency ≤ 1/2 of RabbitMQ", lv, rv, ratio(rv, lv), ok, us)
    if "2d" in present and "2" in present:
        lv, pv = L("2d").s("consume_rate"), L("2").s("consume_rate")
        ok = None if lv is None or pv is None or pv == 0 else lv >= 0.9 * pv
        target_row("(2d) with TTL and DLX, delivered msg/s within 10% of scenario 2 (peer: Lagomorph's 2)",
                   lv, pv, ratio(lv, pv, 2), ok, fmt_int)
    if "8" in present:
        lv, rv = L("8").backlog("drain_rate"), R("8").backlog("drain_rate")
        ok = None if lv is None or rv is None or rv == 0 else lv / rv >= 5
        target_row("(8) backlog drain msg/s ≥ 5x RabbitMQ", lv, rv, ratio(lv, rv), ok, fmt_int)
        lv, rv = L("8").max_rss_mb(), R("8").max_rss_mb()
        target_row("(8) backlog peak RSS ≤ 100 MB (MB; peer: RabbitMQ)", lv, rv, ratio(rv, lv),
                   None if lv is None else lv <= 100, lambda x: fmt(x, 0))
    if "9" in present:
        lv, rv = L("9").max_rss_mb(), R("9").max_rss_mb()
        target_row("(9) 1,000 connections: RSS ≤ 30 MB (MB; peer: RabbitMQ)", lv, rv, ratio(rv, lv),
                   None if lv is None else lv <= 30, lambda x: fmt(x, 0))
    if has_v:
        for s in ("1", "2", "5", "6", "10"):
            if s not in present:
                continue
            lv, vv = L(s).s("consume_rate"), V(s).s("consume_rate")
            ok = None if lv is None or vv is None else lv >= vv
            target_row(f"({s}) delivered msg/s ≥ LavinMQ", lv, vv, ratio(lv, vv), ok, fmt_int)
            lv, vv = L(s).cpu_us_per_msg(), V(s).cpu_us_per_msg()
            ok = None if lv is None or vv is None else lv <= 0.8 * vv
            target_row(f"({s}) broker CPU µs/msg ≤ 0.8x LavinMQ", lv, vv, ratio(lv, vv, 2), ok, cpu2)
        if "4k" in present:
            lv, vv = L("4k").s("consume_rate"), V("4k").s("consume_rate")
            ok = None if lv is None or vv is None else lv >= vv
            target_row("(4k)† delivered msg/s with fsync ≥ LavinMQ's without", lv, vv, ratio(lv, vv), ok, fmt_int)
        for s in ("7a", "7b"):
            if s not in present:
                continue
            lv, vv = L(s).lat("p99_us"), V(s).lat("p99_us")
            ok = None if lv is None or vv is None else lv <= vv and lv <= 200
            f99 = runs[(s, FLOOR)].lat("p99_us")
            floor_note = f" (relay floor: {us(f99)})" if f99 is not None else ""
            target_row(f"({s}) p99 latency ≤ LavinMQ and ≤ 200 µs{floor_note}", lv, vv, ratio(vv, lv), ok, us)
        worse = [s for s in present if L(s).max_rss_mb() is not None and V(s).max_rss_mb() is not None
                 and L(s).max_rss_mb() > V(s).max_rss_mb()]
        w(f"| Peak RSS ≤ LavinMQ's in every scenario | | | | "
          f"{'yes' if not worse else 'no (' + ', '.join(worse) + ')'} |")
    w("")

    # Throughput
    w("## Throughput (delivered msg/s)\n")
    head = " | ".join(NAME[b] for b in brokers)
    rat = " | ".join(f"Lagomorph / {NAME[b]}" for b in peers)
    w(f"| # | Scenario | {head} | {rat} | published msg/s ({', '.join(NAME[b] for b in brokers)}) |")
    w("|---|---|" + "---|" * (len(brokers) + len(peers) + 1))
    for s in present:
        if s == "9":
            continue
        lv = L(s).s("consume_rate")
        vals = " | ".join(fmt_int(runs[(s, b)].s("consume_rate")) for b in brokers)
        rats = " | ".join(ratio(lv, runs[(s, b)].s("consume_rate")) for b in peers)
        pubs = " / ".join(fmt_int(runs[(s, b)].s("publish_rate")) for b in brokers)
        w(f"| {s}{mark(s)} | {TITLE[s]} | {vals} | {rats} | {pubs} |")
    w("")

    # CPU and memory
    w("## Broker CPU and memory\n")
    cpu_h = " | ".join(f"{NAME[b]} CPU µs/msg" for b in brokers)
    cpu_r = " | ".join(f"{NAME[b]} / Lagomorph" for b in peers)
    rss_h = " | ".join(f"{NAME[b]} peak RSS MB" for b in brokers)
    w(f"| # | {cpu_h} | {cpu_r} | {rss_h} | tool CPU µs/msg ({' / '.join(NAME[b] for b in brokers)}) |")
    w("|---|" + "---|" * (2 * len(brokers) + len(peers) + 1))
    for s in present:
        lv = L(s).cpu_us_per_msg()
        unit = " (per conn.)" if s == "9" else ""
        cpus = " | ".join(fmt(runs[(s, b)].cpu_us_per_msg(), 2) + unit for b in brokers)
        rats = " | ".join(ratio(runs[(s, b)].cpu_us_per_msg(), lv) for b in peers)
        rss = " | ".join(fmt(runs[(s, b)].rss_mb(), 0) for b in brokers)
        tool = " / ".join(fmt(runs[(s, b)].tool_cpu_us_per_msg(), 2) for b in brokers)
        w(f"| {s}{mark(s)} | {cpus} | {rats} | {rss} | {tool} |")
    w("")

    # Latency
    w("## Latency (end to end)\n")
    w("In the unthrottled scenarios the producer runs ahead of the consumer, so latency there "
      "is mostly time spent queued; scenarios 7a and 7b are the latency measurements.\n")
    lat_h = " | ".join(f"{NAME[b]} p50 / p99 / p99.9 / max" for b in brokers)
    w(f"| # | {lat_h} |")
    w("|---|" + "---|" * len(brokers))
    def q(x):
        return " / ".join(us(x.lat(k)) for k in ("p50_us", "p99_us", "p999_us", "max_us"))
    for s in present:
        if s in ("8", "9"):
            continue
        w(f"| {s}{mark(s)} | " + " | ".join(q(runs[(s, b)]) for b in brokers) + " |")
    w("")
    floor = [s for s in ("7a", "7b") if runs[(s, FLOOR)].ok]
    if floor:
        w("**The floor.** The same runs against `lagomorph-perf sink --relay`, which forwards each "
          "publish to the consumer as a delivery and does nothing else (no queue, routing or "
          "storage; one tokio task per connection, as in a broker). Its latency is what this "
          "tool, loopback TCP and waking one process in between cost on this machine: no broker "
          "can go under it. The brokers' figures above include it.\n")
        w("| # | relay p50 / p99 / p99.9 / max | " + " | ".join(f"{NAME[b]} p99 − relay p99" for b in brokers) + " |")
        w("|---|---|" + "---|" * len(brokers))
        for s in floor:
            f99 = runs[(s, FLOOR)].lat("p99_us")
            extra = " | ".join(
                us(runs[(s, b)].lat("p99_us") - f99) if runs[(s, b)].lat("p99_us") is not None and f99 is not None
                else "–" for b in brokers)
            w(f"| {s} | {q(runs[(s, FLOOR)])} | {extra} |")
        w("")

    if "8" in present:
        w(f"## Backlog (scenario 8, {a.backlog:,} messages)\n")
        w("Fill ends when the queue holds every message (checked with a passive queue.declare); "
          "drain runs from the consumer's start to the last delivery.\n")
        w("| Broker | fill s | fill msg/s | drain s | drain msg/s | peak RSS MB | CPU µs/msg (fill + drain) |")
        w("|---|---|---|---|---|---|---|")
        for b in brokers:
            x = runs[("8", b)]
            w(f"| {NAME[b]} | {fmt(x.backlog('fill_seconds'), 2)} | {fmt_int(x.backlog('fill_rate'))} | "
              f"{fmt(x.backlog('drain_seconds'), 2)} | {fmt_int(x.backlog('drain_rate'))} | "
              f"{fmt(x.max_rss_mb(), 0)} | {fmt(x.cpu_us_per_msg(), 2)} |")
        w("")
    if "9" in present:
        w("## Connections (scenario 9)\n")
        w("| Broker | opened | time to open all (50 handshakes in flight) | peak RSS MB | broker CPU ms per connection |")
        w("|---|---|---|---|---|")
        for b in brokers:
            x = runs[("9", b)]
            cpu = x.cpu_us_per_msg()
            w(f"| {NAME[b]} | {fmt_int(x.s('opened'))} | {fmt(x.s('open_seconds'), 3)} s | "
              f"{fmt(x.max_rss_mb(), 0)} | {fmt(None if cpu is None else cpu / 1000, 2)} |")
        w("")

    # Tool ceiling
    if ceilings:
        # Which broker figures each ceiling run bounds: same body size, ack mode, confirms.
        def best(scenarios, key):
            vals = []
            for r in rows:
                if r["scenario"] in scenarios and r["summary"]:
                    vals.append(r["summary"].get(key) or 0)
            return max(vals, default=None)

        auto = ("1", "5", "6", "7a", "7b", "8", "10")
        bounds = {
            "publish-16B": (best(("1", "2", "5", "6", "7a", "7b", "8", "10"), "publish_rate"),
                            "publish msg/s, 16 B scenarios"),
            "publish-4KiB": (best(("3", "4k"), "publish_rate"), "publish msg/s, scenarios 3 and 4k"),
            "publish-confirm": (best(("4",), "publish_rate"), "publish msg/s, scenario 4"),
            "consume-auto-ack": (best(auto, "consume_rate"),
                                 "delivered msg/s, auto-ack scenarios (8: drain)"),
            "consume-manual-ack": (best(("2", "4", "4k"), "consume_rate"),
                                   "delivered msg/s, scenarios 2, 4 and 4k"),
        }
        w("## The tool's ceiling\n")
        w("`lagomorph-perf sink` accepts the handshake, answers declares and confirms, discards "
          "publishes and feeds consumers an endless stream of 16-byte deliveries. What the tool "
          "reaches against it is its own ceiling on this machine; it must be at least 3x every "
          "broker figure it reports.\n")
        w("| Run | Tool rate msg/s | Highest broker figure it bounds | Headroom |")
        w("|---|---|---|---|")
        for name, d in ceilings.items():
            rate = d.get("publish_rate") if name.startswith("publish") else d.get("consume_rate")
            b, what = bounds.get(name, (None, ""))
            w(f"| {name} | {fmt_int(rate)} | {fmt_int(b)} ({what}) | {ratio(rate, b)} |")
        w("")

    # Correctness
    w("## Correctness\n")
    bad = [r for r in rows if r["summary"] is None or not r["summary"].get("clean", True)]
    w("Every run checks each message: producers number them, consumers check per-producer "
      "continuity. " + ("Every run was clean: 0 lost, 0 duplicated, 0 out of order."
                        if not bad else "Runs that were not clean:") + "\n")
    if bad:
        w("| # | Broker | Round | exit | lost | dup | out of order | errors |")
        w("|---|---|---|---|---|---|---|---|")
        for r in bad:
            d = r["summary"] or {}
            errs = "; ".join(d.get("errors", []))[:200] or ("no summary" if not d else "")
            w(f"| {r['scenario']} | {NAME[r['broker']]} | {r['round']} | {r['rc']} | {d.get('lost', '–')} | "
              f"{d.get('duplicated', '–')} | {d.get('out_of_order', '–')} | {errs} |")
        w("")

    # Raw
    w("## Every run\n")
    w("| # | Broker | Round | published | delivered msg/s | broker CPU s | CPU µs/msg | peak RSS MB | p99 | clean |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    order = {b: i for i, b in enumerate(BROKERS + (FLOOR,))}
    for s in present:
        for r in sorted([r for r in rows if r["scenario"] == s], key=lambda r: (r["round"], order[r["broker"]])):
            d = r["summary"] or {}
            n = d.get("published") or d.get("opened")
            w(f"| {s} | {NAME[r['broker']]} | {r['round']} | {fmt_int(n)} | {fmt_int(d.get('consume_rate'))} | "
              f"{r['cpu_s']:.2f} | {fmt(r['cpu_s'] * 1e6 / n, 2) if n else '–'} | {r['peak_rss_kb'] / 1024:.0f} | "
              f"{us((d.get('latency') or {}).get('p99_us'))} | {'yes' if d.get('clean') else 'no'} |")
    w("")
    # Hand-written findings (profiles, causes, proposals) kept next to the script, so a
    # re-run regenerates the figures without losing the analysis.
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
    if os.path.exists(notes):
        w(open(notes).read().rstrip() + "\n")
    with open(a.out, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
