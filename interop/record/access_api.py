#!/usr/bin/env python3
"""Records what a broker's management API answers for users, vhosts, permissions, topic
permissions, limits, whoami, tag rules (monitoring, policymaker, management, none) and the
definitions export of all of them, as JSON (statuses and bodies; volatile values reduced to
their types).

    interop/rabbitmq-ref.sh start 5715 --management
    python3 interop/record/access_api.py --http 15715 \\
        > tests/fixtures/rabbitmq-3.10/access-api.json

Run it against Lagomorph's management port too and diff. Standard library only; everything it
makes is deleted again at the end.
"""

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import amqp_raw  # noqa: E402

HTTP = 0
VOLATILE = {"password_hash", "message_stats", "recv_oct", "send_oct", "cluster_state",
            "messages", "messages_ready", "messages_unacknowledged", "recv_oct_details",
            "send_oct_details", "messages_details", "messages_ready_details",
            "messages_unacknowledged_details", "rabbit_version", "rabbitmq_version",
            "product_name", "product_version"}


def call(method, path, body=None, user=("guest", "guest")):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{HTTP}{path}", data=data, method=method)
    if user is not None:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    if not text:
        return {"status": status}
    try:
        return {"status": status, "body": scrub(json.loads(text))}
    except ValueError:
        return {"status": status, "text": text}


def scrub(v):
    if isinstance(v, dict):
        return {k: (type(x).__name__ if k in VOLATILE else scrub(x)) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [scrub(x) for x in v]
    return v


def q(s):
    return urllib.parse.quote(s, safe="")


def main():
    global HTTP
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", type=int, required=True)
    ap.add_argument("--amqp", type=int, help="AMQP port (default: --http minus 10000)")
    args = ap.parse_args()
    HTTP = args.http
    amqp_port = args.amqp or HTTP - 10000
    out = {}

    def case(name, *args, **kw):
        out[name] = call(*args, **kw)

    # Users of each tag; a vhost with metadata.
    case("put_user_monitoring", "PUT", "/api/users/ra-mon", {"password": "p", "tags": "monitoring"})
    case("put_user_again", "PUT", "/api/users/ra-mon", {"password": "p", "tags": "monitoring"})
    call("PUT", "/api/users/ra-pol", {"password": "p", "tags": "policymaker"})
    call("PUT", "/api/users/ra-mgmt", {"password": "p", "tags": "management"})
    call("PUT", "/api/users/ra-none", {"password": "p", "tags": ""})
    case("put_user_no_tags_key", "PUT", "/api/users/ra-x", {"password": "p"})
    case("get_user", "GET", "/api/users/ra-mon")
    case("get_user_missing", "GET", "/api/users/ra-missing")
    case("users_without_permissions", "GET", "/api/users/without-permissions")
    case("put_vhost_meta", "PUT", "/api/vhosts/ra-v",
         {"description": "team v", "tags": "a,b", "default_queue_type": "classic"})
    case("put_vhost_again", "PUT", "/api/vhosts/ra-v", {"description": "team v2"})
    case("get_vhost_meta", "GET", "/api/vhosts/ra-v")
    call("PUT", "/api/vhosts/ra-w", {})
    case("get_default_vhost", "GET", "/api/vhosts/%2F")

    # Permissions.
    perm = {"configure": "^ra-.*", "write": ".*", "read": ".*"}
    case("put_permission", "PUT", "/api/permissions/ra-v/ra-mon", perm)
    case("put_permission_again", "PUT", "/api/permissions/ra-v/ra-mon", perm)
    case("put_permission_no_user", "PUT", "/api/permissions/ra-v/ra-nobody", perm)
    case("put_permission_no_vhost", "PUT", "/api/permissions/ra-nov/ra-mon", perm)
    case("put_permission_missing_key", "PUT", "/api/permissions/ra-v/ra-mon", {"configure": ".*"})
    for u in ("ra-pol", "ra-mgmt", "ra-none"):
        call("PUT", f"/api/permissions/ra-v/{u}", {"configure": ".*", "write": ".*", "read": ".*"})
    case("get_permission", "GET", "/api/permissions/ra-v/ra-mon")
    case("user_permissions", "GET", "/api/users/ra-mon/permissions")
    case("vhost_permissions", "GET", "/api/vhosts/ra-v/permissions")

    # Topic permissions.
    tp = {"exchange": "amq.topic", "write": "^{username}\\..*", "read": ".*"}
    case("put_topic_permission", "PUT", "/api/topic-permissions/ra-v/ra-mon", tp)
    case("put_topic_permission_again", "PUT", "/api/topic-permissions/ra-v/ra-mon", tp)
    case("put_topic_permission_no_exchange_key", "PUT", "/api/topic-permissions/ra-v/ra-mon",
         {"write": ".*", "read": ".*"})
    case("put_topic_permission_no_user", "PUT", "/api/topic-permissions/ra-v/ra-nobody", tp)
    call("PUT", "/api/topic-permissions/ra-v/ra-mon", {"exchange": "ra-x", "write": "", "read": "r"})
    case("topic_permissions", "GET", "/api/topic-permissions")
    case("topic_permission", "GET", "/api/topic-permissions/ra-v/ra-mon")
    case("topic_permission_missing", "GET", "/api/topic-permissions/ra-w/ra-mon")
    case("user_topic_permissions", "GET", "/api/users/ra-mon/topic-permissions")
    case("vhost_topic_permissions", "GET", "/api/vhosts/ra-v/topic-permissions")

    # Limits.
    case("put_vhost_limit", "PUT", "/api/vhost-limits/ra-v/max-connections", {"value": 10})
    call("PUT", "/api/vhost-limits/ra-v/max-queues", {"value": 5})
    case("put_vhost_limit_bad_name", "PUT", "/api/vhost-limits/ra-v/max-bogus", {"value": 1})
    case("put_vhost_limit_no_value", "PUT", "/api/vhost-limits/ra-v/max-queues", {})
    case("put_vhost_limit_string", "PUT", "/api/vhost-limits/ra-v/max-queues", {"value": "x"})
    case("vhost_limits", "GET", "/api/vhost-limits")
    case("vhost_limits_one", "GET", "/api/vhost-limits/ra-v")
    case("vhost_limits_none", "GET", "/api/vhost-limits/ra-w")
    case("put_user_limit", "PUT", "/api/user-limits/ra-mon/max-channels", {"value": 5})
    call("PUT", "/api/user-limits/ra-mon/max-connections", {"value": 3})
    case("put_user_limit_bad_name", "PUT", "/api/user-limits/ra-mon/max-queues", {"value": 1})
    case("put_user_limit_no_user", "PUT", "/api/user-limits/ra-nobody/max-channels", {"value": 1})
    case("user_limits", "GET", "/api/user-limits")
    case("user_limits_one", "GET", "/api/user-limits/ra-mon")
    case("user_with_limits", "GET", "/api/users/ra-mon")
    case("definitions", "GET", "/api/definitions")

    # Who am I, and what each tag may do.
    mon, pol, mgmt, none = ("ra-mon", "p"), ("ra-pol", "p"), ("ra-mgmt", "p"), ("ra-none", "p")
    case("whoami_monitoring", "GET", "/api/whoami", user=mon)
    case("whoami_admin", "GET", "/api/whoami")
    case("no_tag_overview", "GET", "/api/overview", user=none)
    case("no_tag_whoami", "GET", "/api/whoami", user=none)
    case("bad_password", "GET", "/api/whoami", user=("ra-mon", "wrong"))
    case("monitoring_vhosts", "GET", "/api/vhosts?columns=name", user=mon)
    case("management_vhosts", "GET", "/api/vhosts?columns=name", user=mgmt)
    case("management_users", "GET", "/api/users", user=mgmt)
    case("monitoring_users", "GET", "/api/users", user=mon)
    case("monitoring_permissions", "GET", "/api/permissions", user=mon)
    case("monitoring_connections", "GET", "/api/connections?columns=name", user=mon)
    case("monitoring_definitions", "GET", "/api/definitions", user=mon)
    case("monitoring_put_vhost", "PUT", "/api/vhosts/ra-m", {}, user=mon)
    case("monitoring_delete_vhost", "DELETE", "/api/vhosts/ra-w", user=mon)
    case("monitoring_put_user", "PUT", "/api/users/ra-m", {"password": "p", "tags": ""}, user=mon)
    case("monitoring_put_permission", "PUT", "/api/permissions/ra-w/ra-mon", perm, user=mon)
    case("monitoring_put_topic_permission", "PUT", "/api/topic-permissions/ra-w/ra-mon", tp, user=mon)
    case("monitoring_put_vhost_limit", "PUT", "/api/vhost-limits/ra-v/max-queues", {"value": 1}, user=mon)
    case("monitoring_put_user_limit", "PUT", "/api/user-limits/ra-mon/max-channels", {"value": 1}, user=mon)
    case("monitoring_put_policy", "PUT", "/api/policies/ra-v/p1",
         {"pattern": "^x", "definition": {"max-length": 1}}, user=mon)
    case("monitoring_put_queue_own_vhost", "PUT", "/api/queues/ra-v/ra-q1", {"durable": False}, user=mon)
    case("monitoring_put_queue_other_vhost", "PUT", "/api/queues/ra-w/ra-q1", {"durable": False}, user=mon)
    case("monitoring_post_definitions", "POST", "/api/definitions", {"users": []}, user=mon)
    case("management_put_queue_own_vhost", "PUT", "/api/queues/ra-v/ra-q2", {"durable": False}, user=mgmt)
    case("management_put_queue_denied_name", "PUT", "/api/queues/ra-v/other-q", {"durable": False}, user=mon)
    case("management_put_policy", "PUT", "/api/policies/ra-v/p1",
         {"pattern": "^x", "definition": {"max-length": 1}}, user=mgmt)
    case("policymaker_put_policy", "PUT", "/api/policies/ra-v/p1",
         {"pattern": "^x", "definition": {"max-length": 1}}, user=pol)
    case("policymaker_put_policy_other_vhost", "PUT", "/api/policies/ra-w/p1",
         {"pattern": "^x", "definition": {"max-length": 1}}, user=pol)
    case("policymaker_put_vhost_limit", "PUT", "/api/vhost-limits/ra-v/max-queues", {"value": 1}, user=pol)
    case("management_get_vhost_other", "GET", "/api/vhosts/ra-w", user=mgmt)
    case("management_queues_other", "GET", "/api/queues/ra-w", user=mgmt)
    case("management_vhost_limits", "GET", "/api/vhost-limits", user=mgmt)
    case("monitoring_vhost_limits", "GET", "/api/vhost-limits", user=mon)
    case("management_topic_permissions", "GET", "/api/topic-permissions", user=mgmt)
    case("management_user_limits", "GET", "/api/user-limits", user=mgmt)
    call("PUT", "/api/exchanges/ra-v/other-x", {"type": "direct"})
    case("monitoring_publish_refused", "POST", "/api/exchanges/ra-v/other-x/publish",
         {"properties": {}, "routing_key": "k", "payload": "x", "payload_encoding": "string"},
         user=mon)
    call("PUT", "/api/permissions/ra-v/ra-mon", {"configure": "^ra-.*", "write": "^ra-.*", "read": ".*"})
    case("monitoring_publish_refused_by_write", "POST", "/api/exchanges/ra-v/other-x/publish",
         {"properties": {}, "routing_key": "k", "payload": "x", "payload_encoding": "string"},
         user=mon)
    # A guest connection: may a monitoring user (who sees it) close it?
    guest_conn = amqp_raw.Conn("127.0.0.1", amqp_port)
    guest_conn.handshake()
    name = None
    for _ in range(100):  # RabbitMQ lists a connection once its stats arrive (bounded wait)
        conns = call("GET", "/api/connections?columns=name,user")
        name = next((c["name"] for c in conns.get("body", []) if c.get("user") == "guest"), None)
        if name:
            break
        time.sleep(0.2)
    case("monitoring_close_other_connection", "DELETE", f"/api/connections/{q(name)}", user=mon)
    guest_conn.close()

    # Deletions.
    case("delete_vhost_limit", "DELETE", "/api/vhost-limits/ra-v/max-connections")
    case("delete_vhost_limit_again", "DELETE", "/api/vhost-limits/ra-v/max-connections")
    case("delete_user_limit", "DELETE", "/api/user-limits/ra-mon/max-channels")
    case("delete_topic_permission", "DELETE", "/api/topic-permissions/ra-v/ra-mon")
    case("delete_topic_permission_again", "DELETE", "/api/topic-permissions/ra-v/ra-mon")
    case("delete_permission", "DELETE", "/api/permissions/ra-v/ra-mon")
    case("delete_permission_again", "DELETE", "/api/permissions/ra-v/ra-mon")
    case("delete_user", "DELETE", "/api/users/ra-mon")
    case("delete_user_again", "DELETE", "/api/users/ra-mon")
    for u in ("ra-pol", "ra-mgmt", "ra-none", "ra-x", "ra-m"):
        call("DELETE", f"/api/users/{u}")
    for v in ("ra-v", "ra-w", "ra-m"):
        call("DELETE", f"/api/vhosts/{v}")
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
