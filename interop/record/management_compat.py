#!/usr/bin/env python3
"""Records what a broker's management API answers in the cases of issue 12 (trailing
slashes, client_properties, listeners and contexts, health checks, users/bulk-delete,
cluster-name, unknown paths, body size limit), as JSON.

    interop/rabbitmq-ref.sh start 5712 --management
    python3 interop/record/management_compat.py --port 5712 --http 15712 \\
        > tests/fixtures/rabbitmq-3.10/management-compat.json

Run it against Lagomorph (its AMQP and management ports) and diff to compare. Standard
library only; users and names it makes are unique and deleted again.
"""

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import amqp_raw as a  # noqa: E402

AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def call(http, method, path, body=None, auth=True, raw=None):
    """(status, parsed JSON body or text or None)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{http}{path}", data=data, method=method)
    if auth:
        req.add_header("Authorization", AUTH)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    if not text:
        return status, None
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def shape(v):
    """A JSON value with the values replaced by their types (for shapes that vary by machine)."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [shape(x) for x in v[:1]]
    return type(v).__name__


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="AMQP port")
    p.add_argument("--http", type=int, required=True, help="management port")
    args = p.parse_args()
    h = args.http
    out = {"recorded_by": "interop/record/management_compat.py", "cases": {}}
    cases = out["cases"]
    status, overview = call(h, "GET", "/api/overview")
    out["broker"] = f"{overview.get('product_name')} {overview.get('product_version')}"
    cases["overview_listeners"] = {"status": status, "listeners": overview.get("listeners"),
                                   "contexts": overview.get("contexts"),
                                   "listener_shape": shape(overview.get("listeners")),
                                   "context_shape": shape(overview.get("contexts"))}
    for path in ("/api/queues/", "/api/connections/", "/api/vhosts/", "/api/exchanges/%2F/",
                 "/api/overview/"):
        st, body = call(h, "GET", path)
        cases[f"trailing_slash {path}"] = {"status": st, "is_list": isinstance(body, list)}

    name = f"record-conn-{uuid.uuid4().hex[:8]}"
    c = a.Conn("127.0.0.1", args.port)
    c.handshake(properties={"connection_name": name, "product": "lagomorph-record"})
    # RabbitMQ lists a connection once its first statistics event is in (every 5 s).
    deadline = time.monotonic() + 15
    mine = []
    while not mine and time.monotonic() < deadline:
        st, conns = call(h, "GET", "/api/connections")
        mine = [x for x in conns
                if x.get("client_properties", {}).get("connection_name") == name]
        if not mine:
            c.recv(timeout=0.5)
    cases["connection_client_properties"] = {
        "status": st, "found_by_connection_name": len(mine),
        "client_properties": mine[0]["client_properties"] if mine else None,
        "user_provided_name": mine[0].get("user_provided_name") if mine else None}
    c.close()

    for path in ("/api/healthchecks/node", "/api/health/checks/alarms",
                 "/api/health/checks/local-alarms", f"/api/health/checks/port-listener/{args.port}",
                 f"/api/health/checks/port-listener/{h}", "/api/health/checks/port-listener/1",
                 "/api/health/checks/port-listener/abc", "/api/health/checks/virtual-hosts",
                 "/api/health/checks/node-is-quorum-critical", "/api/health/checks/nope"):
        st, body = call(h, "GET", path)
        if isinstance(body, dict) and "ports" in body:
            body["ports"] = "(the node's listening ports)"
        if isinstance(body, dict) and body.get("port") in (args.port, h):
            body["port"] = "(the port asked)"
        key = path.replace(str(h), "{http}").replace(str(args.port), "{amqp}")
        cases[f"GET {key}"] = {"status": st, "body": body}
    st, _ = call(h, "GET", "/api/healthchecks/node", auth=False)
    cases["GET /api/healthchecks/node without credentials"] = {"status": st}

    users = [f"record-user-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for u in users:
        call(h, "PUT", f"/api/users/{u}", {"password": "x", "tags": ""})
    st, body = call(h, "POST", "/api/users/bulk-delete", {"users": users[:2]})
    left = [call(h, "GET", f"/api/users/{u}")[0] for u in users[:2]]
    cases["bulk_delete"] = {"status": st, "body": body, "then_get_status": left}
    st, body = call(h, "POST", "/api/users/bulk-delete", {"users": ["record-nobody", users[2]]})
    cases["bulk_delete_missing_first"] = {
        "status": st, "body": body, "existing_user_after": call(h, "GET", f"/api/users/{users[2]}")[0]}
    call(h, "DELETE", f"/api/users/{users[2]}")
    st, body = call(h, "POST", "/api/users/bulk-delete", {"nousers": 1})
    cases["bulk_delete_without_users"] = {"status": st, "body": body}
    st, body = call(h, "POST", "/api/users/bulk-delete", {"users": []})
    cases["bulk_delete_empty"] = {"status": st, "body": body}

    st, original = call(h, "GET", "/api/cluster-name")
    cases["GET /api/cluster-name"] = {"status": st, "shape": shape(original)}
    st, body = call(h, "PUT", "/api/cluster-name", {"name": "record-cluster"})
    cases["PUT /api/cluster-name"] = {"status": st, "body": body,
                                      "then": call(h, "GET", "/api/cluster-name")[1],
                                      "overview_cluster_name":
                                          call(h, "GET", "/api/overview")[1].get("cluster_name")}
    st, body = call(h, "PUT", "/api/cluster-name", {"nam": "x"})
    cases["PUT /api/cluster-name without name"] = {"status": st, "body": body}
    call(h, "PUT", "/api/cluster-name", original)
    st, _ = call(h, "GET", "/api/cluster-name", auth=False)
    cases["GET /api/cluster-name without credentials"] = {"status": st}

    for path in ("/api/nope", "/api/nope/"):
        st, body = call(h, "GET", path)
        cases[f"GET {path}"] = {"status": st, "body": body}
    for size in (8_000_000, 9_000_000):
        st, body = call(h, "POST", "/api/definitions", raw=b" " * size)
        cases[f"POST /api/definitions of {size} spaces"] = {"status": st, "body": body}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
