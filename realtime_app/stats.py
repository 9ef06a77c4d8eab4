"""The figures of one process, for /api/v1/stats, /metrics and scripts/rt-stats.

The pieces that change a figure own it: the connections and outboxes count into
`RealtimeCounters`, the hub knows its subscriptions, the feed its events and replay buffer.
`Stats` reads them when asked and keeps only what no other piece owns: REST requests, rates
over a sliding window, MongoDB's last ping. One snapshot feeds both the JSON and the
Prometheus views, so they never disagree.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from tornado.ioloop import PeriodicCallback

from realtime_app import __version__
from realtime_app.context import READY_TIMEOUT_S
from realtime_app.counters import Histogram, rounded
from realtime_app.data.db import describe
from realtime_app.live import positions
from realtime_app.live.changefeed import ChangeFeed

if TYPE_CHECKING:
    from realtime_app.context import Context
    from realtime_app.live.service import Realtime

# Rates are averaged over this window: long enough to smooth a burst, short enough to follow the load.
RATE_WINDOW_S = 10.0
SAMPLE_INTERVAL_S = 1.0
STATES = ("authenticated", "unauthenticated")


@dataclass
class DatabaseHealth:
    ok: bool | None = None
    ping_s: float | None = None
    error: str | None = None


def process_figures() -> dict[str, Any]:
    """Memory, CPU and open files of this process from /proc/self; None where there is no /proc."""
    figures: dict[str, Any] = {"rss_bytes": None, "cpu_seconds": None, "open_files": None,
                               "max_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}
    try:
        with open("/proc/self/statm") as statm:
            figures["rss_bytes"] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        figures["cpu_seconds"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        figures["open_files"] = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError, IndexError):
        pass
    return figures


class Stats:
    """Owns the process's metrics registry and the figures no other piece owns."""

    def __init__(self, context: Context, realtime: Realtime):
        self.context = context
        self.realtime = realtime
        self.started = time.monotonic()
        self.database = DatabaseHealth()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.request_latency: dict[tuple[str, str], Histogram] = {}
        self._samples: deque[tuple[float, tuple[int, ...]]] = deque(maxlen=int(RATE_WINDOW_S / SAMPLE_INTERVAL_S) + 1)
        self._sampler: PeriodicCallback | None = None
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    def start(self) -> None:
        self._sample()
        self._sampler = PeriodicCallback(self._sample, SAMPLE_INTERVAL_S * 1000)
        self._sampler.start()

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[route, method, status] += 1
        histogram = self.request_latency.get((route, method))
        if histogram is None:
            histogram = self.request_latency[route, method] = Histogram()
        histogram.observe(seconds)

    async def check_database(self) -> None:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self.context.db.ping(), READY_TIMEOUT_S)
        except Exception as exc:  # an unreachable database is a figure to show, not an error to raise
            self.database = DatabaseHealth(False, None, describe(exc))
        else:
            self.database = DatabaseHealth(True, time.perf_counter() - started, None)

    def _totals(self) -> tuple[int, ...]:
        counters = self.realtime.counters
        return counters.frames_in, counters.frames_out, counters.bytes_out, self.realtime.live_feed.events_total

    def _sample(self) -> None:
        self._samples.append((time.monotonic(), self._totals()))

    def _rates(self, totals: tuple[int, ...]) -> tuple[float, list[float]]:
        """Per-second rates from the oldest sample in the window to now, and the span they cover."""
        if not self._samples:
            return 0.0, [0.0] * len(totals)
        then, old = self._samples[0]
        span = time.monotonic() - then
        if span <= 0:
            return 0.0, [0.0] * len(totals)
        return span, [round((new - before) / span, 3) for new, before in zip(totals, old, strict=True)]

    def snapshot(self) -> dict[str, Any]:
        """Every figure as plain JSON; the shape is documented in the README."""
        realtime, counters, feed = self.realtime, self.realtime.counters, self.realtime.live_feed
        now = time.time()
        by_transport: dict[str, dict[str, int]] = {}
        depth_total = depth_max = bytes_total = bytes_max = 0
        for connection in list(realtime.connections):
            states = by_transport.setdefault(connection.transport, dict.fromkeys(STATES, 0))
            states["authenticated" if connection.principal is not None else "unauthenticated"] += 1
            depth, queued_bytes = len(connection.outbox), connection.outbox.queued_bytes
            depth_total += depth
            depth_max = max(depth_max, depth)
            bytes_total += queued_bytes
            bytes_max = max(bytes_max, queued_bytes)
        authenticated = sum(states["authenticated"] for states in by_transport.values())
        subscriptions = realtime.hub.counts()
        totals = self._totals()
        window, (in_rate, out_rate, bytes_rate, events_rate) = self._rates(totals)
        replay = feed.replay
        routes: dict[tuple[str, str], dict[str, int]] = {}
        for (route, method, status), count in sorted(self.requests.items()):
            routes.setdefault((route, method), {})[str(status)] = count
        return {
            "server": {"name": realtime.server_name, "process": realtime.settings.process_name, "host": socket.gethostname(),
                       "pid": os.getpid(), "uptime_s": round(time.monotonic() - self.started, 3), "time": now},
            "connections": {"total": len(realtime.connections), "authenticated": authenticated,
                            "unauthenticated": len(realtime.connections) - authenticated,
                            "users": realtime.connections.users, "by_transport": by_transport},
            "subscriptions": {"total": sum(subscriptions.values()), "by_collection": subscriptions},
            "frames": {"in_total": totals[0], "out_total": totals[1], "bytes_out_total": totals[2],
                       "in_per_s": in_rate, "out_per_s": out_rate, "bytes_out_per_s": bytes_rate,
                       "rate_window_s": round(window, 3)},
            "changes": {
                "feed": "change_stream" if isinstance(feed, ChangeFeed) else "polling",
                "running": feed.running, "error": feed.last_error,
                "events_total": totals[3], "per_s": events_rate,
                "lag_s": rounded(now - feed.last_event_wall_time if feed.last_event_wall_time is not None else None),
                "head_age_s": rounded(now - positions.seconds(feed.head) if feed.head else None),
            },
            "replay": {"events": len(replay), "capacity": replay.maxlen,
                       "span_s": rounded(replay[-1].wall_time - replay[0].wall_time if replay else None)},
            "outbox": {"depth_total": depth_total, "depth_max": depth_max, "bytes_total": bytes_total, "bytes_max": bytes_max,
                       "conflated_total": counters.conflated},
            "filters": {"cached": len(realtime.filters), "cached_bytes": realtime.filters.bytes},
            "limits": {"slow_consumer_closes": counters.slow_consumer_closes, "rate_limited": counters.rate_limited,
                       "oversized_frames": counters.oversized_frames, "auth_failures": counters.auth_failures,
                       "connections_refused": counters.connections_refused,
                       "connections_refused_per_address": realtime.router.refused_over_address_cap if realtime.router else 0},
            "delivery_latency": counters.delivery_latency.summary(),
            "rest": {"requests_total": sum(self.requests.values()), "routes": [
                {"route": route, "method": method, "count": sum(statuses.values()), "by_status": statuses,
                 "latency": self.request_latency[route, method].summary()}
                for (route, method), statuses in routes.items()
            ]},
            "process": process_figures(),
            "mongodb": {"ok": self.database.ok, "error": self.database.error,
                        "ping_ms": rounded(self.database.ping_s * 1000 if self.database.ping_s is not None else None)},
        }



class _Collector:
    """Renders a fresh snapshot as Prometheus metric families on every scrape."""

    def __init__(self, stats: Stats):
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        connections = GaugeMetricFamily("realtime_connections", "Open SockJS sessions by transport and state",
                                        labels=["transport", "state"])
        for transport, states in snap["connections"]["by_transport"].items():
            for state, count in states.items():
                connections.add_metric([transport, state], count)
        yield connections
        subscriptions = GaugeMetricFamily("realtime_subscriptions", "Live queries by collection", labels=["collection"])
        for collection, count in snap["subscriptions"]["by_collection"].items():
            subscriptions.add_metric([collection], count)
        yield subscriptions
        requests = CounterMetricFamily("realtime_http_requests_total", "REST requests by route (handler), method and status",
                                       labels=["route", "method", "status"])
        for (route, method, status), count in sorted(self.stats.requests.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily("realtime_http_request_duration_seconds", "REST request duration",
                                        labels=["route", "method"])
        for (route, method), histogram in sorted(self.stats.request_latency.items()):
            latency.add_metric([route, method], histogram.cumulative(), histogram.sum)
        yield latency
        info = GaugeMetricFamily("realtime_process_info", "Always 1; its labels name this process and its version",
                                 labels=["process", "version"])
        info.add_metric([snap["server"]["process"], __version__], 1)
        yield info
        delivery = self.stats.realtime.counters.delivery_latency
        yield HistogramMetricFamily("realtime_delivery_latency_seconds",
                                    "Change wall time to its frame written by the outbox, once per written batch",
                                    buckets=delivery.cumulative(), sum_value=delivery.sum)
        yield from _scalars(snap)


def _scalars(snap: dict[str, Any]) -> Iterator[Metric]:
    """The single-valued figures; those not known yet (no event, no /proc) are left out."""
    frames, changes, limits, process, mongodb = snap["frames"], snap["changes"], snap["limits"], snap["process"], snap["mongodb"]
    counters = [
        ("realtime_frames_in_total", "Frames received from clients", frames["in_total"]),
        ("realtime_frames_out_total", "Messages sent to clients", frames["out_total"]),
        ("realtime_bytes_out_total", "Bytes of messages sent to clients", frames["bytes_out_total"]),
        ("realtime_change_events_total", "Change events read from the feed", changes["events_total"]),
        ("realtime_conflated_frames_total", "Queued changes replaced by a newer one", snap["outbox"]["conflated_total"]),
        ("realtime_slow_consumer_closes_total", "Sessions closed with 4009 for falling behind", limits["slow_consumer_closes"]),
        ("realtime_rate_limited_frames_total", "Client frames refused by the rate limit", limits["rate_limited"]),
        ("realtime_oversized_frames_total", "Client frames over max_frame_bytes", limits["oversized_frames"]),
        ("realtime_auth_failures_total", "Socket auth frames refused", limits["auth_failures"]),
        ("realtime_connections_refused_total", "Sockets refused over max_connections_per_user", limits["connections_refused"]),
        ("realtime_connections_refused_per_address_total", "SockJS sessions refused over max_connections_per_address",
         limits["connections_refused_per_address"]),
        ("process_cpu_seconds_total", "User and system CPU time of the process", process["cpu_seconds"]),
    ]
    gauges = [
        ("realtime_users_connected", "Distinct users with an authenticated socket", snap["connections"]["users"]),
        ("realtime_frames_in_per_second", "Frames received per second over the rate window", frames["in_per_s"]),
        ("realtime_frames_out_per_second", "Messages sent per second over the rate window", frames["out_per_s"]),
        ("realtime_bytes_out_per_second", "Bytes sent per second over the rate window", frames["bytes_out_per_s"]),
        ("realtime_change_events_per_second", "Change events per second over the rate window", changes["per_s"]),
        ("realtime_change_feed_up", "1 while the change feed runs", int(changes["running"])),
        ("realtime_change_feed_lag_seconds", "Now minus the wall time of the last change event", changes["lag_s"]),
        ("realtime_change_feed_head_age_seconds", "Now minus the cluster time of the feed's newest position", changes["head_age_s"]),
        ("realtime_replay_buffer_events", "Events held for clients that resume", snap["replay"]["events"]),
        ("realtime_replay_buffer_span_seconds", "Wall time between the oldest and newest buffered event", snap["replay"]["span_s"]),
        ("realtime_outbox_depth", "Frames queued in all outboxes", snap["outbox"]["depth_total"]),
        ("realtime_outbox_depth_max", "Frames queued in the fullest outbox", snap["outbox"]["depth_max"]),
        ("realtime_outbox_bytes", "Bytes queued in all outboxes", snap["outbox"]["bytes_total"]),
        ("realtime_outbox_bytes_max", "Bytes queued in the fullest outbox", snap["outbox"]["bytes_max"]),
        ("realtime_filter_cache_bytes", "Approximate bytes held by compiled live-query filters", snap["filters"]["cached_bytes"]),
        ("realtime_mongodb_up", "1 when MongoDB answered the last ping", None if mongodb["ok"] is None else int(mongodb["ok"])),
        ("realtime_mongodb_ping_seconds", "Duration of the last MongoDB ping",
         None if mongodb["ping_ms"] is None else mongodb["ping_ms"] / 1000),
        ("process_resident_memory_bytes", "Resident memory of the process", process["rss_bytes"]),
        ("process_open_fds", "Open file descriptors", process["open_files"]),
        ("process_max_fds", "Limit on open file descriptors", process["max_files"]),
    ]
    for name, doc, value in counters:
        if value is not None:
            yield CounterMetricFamily(name, doc, value=value)
    for name, doc, value in gauges:
        if value is not None:
            yield GaugeMetricFamily(name, doc, value=value)
