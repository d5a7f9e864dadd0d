"""Records the RabbitMQ 3.10 management API fields the web UI reads, into
tests/fixtures/rabbitmq-3.10/ui-shapes.json: /api/nodes figures (fd_total, disk_free...),
overview message_stats after a returned mandatory message (return_unroutable), a queue's
consumer_details, the paged listing envelope, and whether `name` filters (plain and
`use_regex`) are case-insensitive.

    interop/rabbitmq-ref.sh start 5717 --management
    python3 -m venv /tmp/v && /tmp/v/bin/pip install pika==1.4.4
    /tmp/v/bin/python interop/record/ui_shapes.py 5717
"""
import base64
import json
import pathlib
import sys
import time
import urllib.request

import pika

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 5717
HTTP = f"http://127.0.0.1:{PORT + 10000}"
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def get(path):
    req = urllib.request.Request(HTTP + path, headers={"Authorization": AUTH})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


conn = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{PORT}/%2F"))
ch = conn.channel()
ch.queue_declare("ui-shapes")
ch.basic_consume("ui-shapes", lambda *a: None, consumer_tag="ui-shapes-consumer")
ch.basic_publish("amq.direct", "nowhere", b"x", mandatory=True)
conn.process_data_events(time_limit=0.5)

# Stats arrive every 5 s: wait (bounded) until the return shows up.
stats = {}
for _ in range(60):
    stats = get("/api/overview").get("message_stats", {})
    if "return_unroutable" in stats:
        break
    time.sleep(1)
node = get("/api/nodes")[0]
queue = get("/api/queues/%2F/ui-shapes")
paged = get("/api/queues?page=1&page_size=1")
regex_upper = get("/api/queues?page=1&page_size=10&name=UI-SHAPES&use_regex=true")
plain_upper = get("/api/queues?page=1&page_size=10&name=UI-SHAPES")
out = {
    "rabbitmq_version": get("/api/overview")["rabbitmq_version"],
    "node_fields_the_ui_reads": {k: type(node.get(k)).__name__ for k in [
        "mem_used", "mem_limit", "mem_alarm", "disk_free", "disk_free_limit", "disk_free_alarm",
        "fd_used", "fd_total", "uptime"]},
    "overview_message_stats_keys": sorted(stats.keys()),
    "overview_return_unroutable": stats.get("return_unroutable"),
    "queue_consumer_details_keys": sorted(queue["consumer_details"][0].keys())
    if queue.get("consumer_details") else None,
    "queue_consumer_active": [c.get("active") for c in queue.get("consumer_details", [])],
    "queue_keys": sorted(queue.keys()),
    "paged_envelope_keys": sorted(paged.keys()),
    "use_regex_UI-SHAPES_matches_ui-shapes": regex_upper["filtered_count"] > 0,
    "substring_UI-SHAPES_matches_ui-shapes": plain_upper["filtered_count"] > 0,
}
conn.close()
path = pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/rabbitmq-3.10/ui-shapes.json"
path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
print(path)
