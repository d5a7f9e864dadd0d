#!/usr/bin/env python3
"""Samples a running broker during a backlog run (fill, then drain) and reports per-tenth rates.

Usage: backlog_sampler.py PID MGMT_PORT QUEUE DATA_DIR OUT.json
Polls every 0.25 s until killed (SIGTERM/SIGINT) or the queue is gone for 60 s: the queue's
depth (management API, /api/queues/%2f/QUEUE), the broker's RSS (/proc/PID/status) and the data
directory's size. At the end it splits the timeline into the fill (depth rising to its peak)
and the drain (peak to zero) and prints the rate of each tenth of each phase, peak RSS, and
how long after the drain the data directory was back under 100 MB.
"""
import base64, json, os, signal, sys, time, urllib.request

pid, port, queue, data_dir, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
auth = base64.b64encode(b"guest:guest").decode()
samples = []
stop = False
def on_signal(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)

def depth():
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/queues/%2f/{queue}",
                                 headers={"Authorization": "Basic " + auth})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return json.load(r).get("messages")
    except Exception:
        return None

def rss_kb():
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None

def dir_bytes():
    total = 0
    for root, _, files in os.walk(data_dir):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total

t0 = time.time()
while not stop:
    samples.append((time.time() - t0, depth(), rss_kb(), dir_bytes()))
    time.sleep(0.25)

def tenths(points, rising):
    """Rates of each tenth of a monotone phase given (t, depth) points."""
    if len(points) < 2:
        return []
    start, end = points[0][1], points[-1][1]
    total = abs(end - start)
    rates = []
    for k in range(10):
        lo = start + (total * k / 10 if rising else -total * k / 10)
        hi = start + (total * (k + 1) / 10 if rising else -total * (k + 1) / 10)
        def when(level):
            for t, d in points:
                if (d >= level) if rising else (d <= level):
                    return t
            return points[-1][0]
        dt = when(hi) - when(lo)
        rates.append(round(total / 10 / dt) if dt > 0 else None)
    return rates

pts = [(t, d) for t, d, _, _ in samples if d is not None]
peak_i = max(range(len(pts)), key=lambda i: pts[i][1]) if pts else 0
fill = pts[: peak_i + 1]
fill = [p for p in fill if p[1] > 0] or fill
drain = pts[peak_i:]
# The load generator deletes its queue when it is done: a queue gone after its peak is drained.
drain_end = next((t for t, d in drain if d == 0), None)
if drain_end is None and pts and pts[-1][1] > 0:
    drain_end = next((t for t, d, _, _ in samples if t > pts[-1][0] and d is None), None)
under = None
if drain_end is not None:
    for t, _, _, b in samples:
        if t >= drain_end and b < 100 * 2**20:
            under = round(t - drain_end, 1)
            break
res = {
    "peak_depth": pts[peak_i][1] if pts else None,
    "fill_tenths_msg_s": tenths(fill, True),
    "drain_tenths_msg_s": tenths(drain, False),
    "peak_rss_mb": round(max((r or 0) for _, _, r, _ in samples) / 1024, 1),
    "peak_data_dir_mb": round(max(b for _, _, _, b in samples) / 2**20, 1),
    "final_data_dir_mb": round(samples[-1][3] / 2**20, 1) if samples else None,
    "seconds_from_drained_to_dir_under_100mb": under,
}
json.dump({"summary": res, "samples": samples}, open(out, "w"))
print(json.dumps(res, indent=1))
