"""/api/v1/stats and /metrics: shape, figures that move, who may read them, counts back to zero."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from realtime_app.client import RealtimeClient
from realtime_app.counters import Histogram
from tests.helpers import ApiClient

SECTIONS = {"server", "connections", "subscriptions", "frames", "changes", "replay", "outbox", "filters", "limits",
            "delivery_latency", "rest", "process", "mongodb"}
KEY_SAMPLES = {
    "realtime_connections", "realtime_subscriptions", "realtime_users_connected",
    "realtime_frames_in_total", "realtime_frames_out_total", "realtime_bytes_out_total", "realtime_frames_out_per_second",
    "realtime_change_events_total", "realtime_change_events_per_second", "realtime_change_feed_up",
    "realtime_change_feed_lag_seconds", "realtime_change_feed_head_age_seconds",
    "realtime_replay_buffer_events", "realtime_replay_buffer_span_seconds", "realtime_outbox_depth", "realtime_outbox_depth_max",
    "realtime_outbox_bytes", "realtime_outbox_bytes_max", "realtime_filter_cache_bytes",
    "realtime_conflated_frames_total", "realtime_slow_consumer_closes_total", "realtime_rate_limited_frames_total",
    "realtime_oversized_frames_total", "realtime_auth_failures_total",
    "realtime_http_requests_total", "realtime_http_request_duration_seconds_bucket",
    "realtime_delivery_latency_seconds_bucket", "realtime_delivery_latency_seconds_count",
    "realtime_mongodb_up", "realtime_mongodb_ping_seconds",
    "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
}


def admin(api: ApiClient) -> str:
    return api.token(user="root", tenant="t1", roles=("admin",))


async def stats(api: ApiClient) -> dict[str, Any]:
    reply = await api.get("/api/v1/stats", token=admin(api))
    assert reply.status == 200, reply.body
    return reply.body


async def stats_until(api: ApiClient, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await stats(api)
        if predicate(body):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


def samples(text: str) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


async def test_a_quiet_server_reports_every_section(api: ApiClient) -> None:
    body = await stats(api)
    assert set(body) == SECTIONS
    assert body["connections"] == {"total": 0, "authenticated": 0, "unauthenticated": 0, "users": 0, "by_transport": {}}
    assert body["subscriptions"] == {"total": 0, "by_collection": {}}
    assert body["changes"]["feed"] == "change_stream" and body["changes"]["running"] is True
    assert body["changes"]["lag_s"] is None and body["changes"]["head_age_s"] >= 0
    assert body["replay"] == {"events": 0, "capacity": api.server.settings.replay_buffer_events, "span_s": None}
    assert body["delivery_latency"] == {"count": 0, "sum_s": 0.0, "p50": None, "p90": None, "p99": None}
    assert body["mongodb"]["ok"] is True and body["mongodb"]["ping_ms"] > 0 and body["mongodb"]["error"] is None
    process = body["process"]
    assert process["rss_bytes"] > 1_000_000 and process["cpu_seconds"] > 0 and 0 < process["open_files"] <= process["max_files"]


async def test_figures_follow_a_subscription_and_a_write(api: ApiClient) -> None:
    client = RealtimeClient(api.base, api.token(), transport="websocket")
    try:
        await client.connect()
        view = await client.subscribe("services")
        before = await stats(api)
        assert before["connections"]["by_transport"] == {"websocket": {"authenticated": 1, "unauthenticated": 0}}
        assert before["connections"]["users"] == 1
        assert before["subscriptions"] == {"total": 1, "by_collection": {"services": 1}}
        created = (await api.post("/api/v1/services", {"name": "a", "status": "up"}, token=api.token())).body
        await view.wait_for(lambda v: created["id"] in v.docs)
        after = await stats_until(api, lambda body: body["delivery_latency"]["count"] >= 1)
    finally:
        await client.close()
    frames, changes = after["frames"], after["changes"]
    assert frames["in_total"] >= 2 and frames["out_total"] > before["frames"]["out_total"]
    assert frames["bytes_out_total"] > before["frames"]["bytes_out_total"]
    assert frames["out_per_s"] > 0 and frames["bytes_out_per_s"] > 0 and 0 < frames["rate_window_s"] <= 11
    assert changes["events_total"] == before["changes"]["events_total"] + 1 and changes["per_s"] > 0
    assert 0 <= changes["lag_s"] < 10
    assert after["replay"]["events"] == 1 and after["replay"]["span_s"] == 0
    assert 0 <= after["delivery_latency"]["p50"] < 1
    create = [r for r in after["rest"]["routes"] if (r["route"], r["method"]) == ("DocumentListHandler", "POST")]
    assert create and create[0]["by_status"] == {"201": 1} and create[0]["latency"]["count"] == 1


@pytest.mark.parametrize("transport", ["websocket", pytest.param("xhr-polling", marks=pytest.mark.slow)])
async def test_counts_return_to_zero_after_clients_leave(spawn_server, transport: str) -> None:
    # A closed polling client leaves its last poll open until a heartbeat answers it; then the session times out.
    api = ApiClient(await spawn_server(sockjs_disconnect_delay_s=0.5, sockjs_heartbeat_s=1.0))
    clients = [RealtimeClient(api.base, api.token(user=f"u{i}"), transport=transport) for i in range(3)]
    for client in clients:
        await client.connect()
        await client.subscribe("services")
        await client.subscribe("incidents")
    busy = await stats(api)
    assert busy["connections"]["authenticated"] == 3 and busy["connections"]["users"] == 3
    assert busy["subscriptions"]["by_collection"] == {"services": 3, "incidents": 3}
    for client in clients:
        await client.close()
    idle = await stats_until(api, lambda body: body["connections"]["total"] == 0)
    assert idle["connections"] == {"total": 0, "authenticated": 0, "unauthenticated": 0, "users": 0, "by_transport": {}}
    assert idle["subscriptions"] == {"total": 0, "by_collection": {}}
    assert (idle["outbox"]["depth_total"], idle["outbox"]["depth_max"], idle["outbox"]["bytes_total"]) == (0, 0, 0)


async def test_stats_are_for_admins(api: ApiClient) -> None:
    assert (await api.get("/api/v1/stats")).problem["status"] == 401
    for role in ("viewer", "editor"):
        reply = await api.get("/api/v1/stats", token=api.token(roles=(role,)))
        assert reply.problem["status"] == 403


async def test_metrics_parse_and_name_the_key_figures(api: ApiClient) -> None:
    client = RealtimeClient(api.base, api.token(), transport="websocket")
    try:
        await client.connect()
        view = await client.subscribe("services")
        created = (await api.post("/api/v1/services", {"name": "m", "status": "up"}, token=api.token())).body
        await view.wait_for(lambda v: created["id"] in v.docs)
        await stats_until(api, lambda body: body["delivery_latency"]["count"] >= 1)
        reply = await api.get("/metrics", token=admin(api))
    finally:
        await client.close()
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    found = samples(reply.body)
    assert set(found) >= KEY_SAMPLES, KEY_SAMPLES - set(found)
    connections = {(s.labels["transport"], s.labels["state"]): s.value for s in found["realtime_connections"]}
    assert connections == {("websocket", "authenticated"): 1, ("websocket", "unauthenticated"): 0}
    assert [s.value for s in found["realtime_subscriptions"] if s.labels == {"collection": "services"}] == [1]
    assert found["realtime_change_events_total"][0].value == 1
    assert found["realtime_delivery_latency_seconds_count"][0].value >= 1
    created_requests = [s for s in found["realtime_http_requests_total"]
                        if s.labels == {"route": "DocumentListHandler", "method": "POST", "status": "201"}]
    assert [s.value for s in created_requests] == [1]
    assert found["realtime_mongodb_up"][0].value == 1


async def test_metrics_need_an_admin_unless_public(api: ApiClient, spawn_server) -> None:
    assert (await api.get("/metrics")).problem["status"] == 401
    assert (await api.get("/metrics", token=api.token(roles=("viewer",)))).problem["status"] == 403
    public = ApiClient(await spawn_server(metrics_public=True))  # a second server in the process: registries must not collide
    reply = await public.get("/metrics")
    assert reply.status == 200 and "realtime_change_feed_up 1.0" in reply.body
    assert (await api.get("/metrics", token=admin(api))).status == 200


def test_histogram_buckets_and_quantiles() -> None:
    histogram = Histogram((0.01, 0.1, 1.0))
    assert histogram.quantile(0.5) is None
    for value in (0.005, 0.05, 0.05, 0.5, 5.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.01", 1.0), ("0.1", 3.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert histogram.count == 5 and histogram.sum == pytest.approx(5.605)
    assert histogram.quantile(0.5) == pytest.approx(0.01 + 0.09 * 1.5 / 2)
    assert histogram.quantile(0.99) == 1.0
