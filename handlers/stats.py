"""The server's figures: /api/v1/stats (JSON, admins) and /metrics (Prometheus text, admins
unless the `metrics_public` setting opens it to a scraper without a token)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers.base import APIHandler
from realtime_app.context import Context
from realtime_app.errors import Forbidden
from realtime_app.stats import Stats


class FiguresHandler(APIHandler):
    def initialize(self, context: Context, stats: Stats) -> None:  # type: ignore[override]
        super().initialize(context)
        self.stats = stats

    async def prepare(self) -> None:
        await super().prepare()
        if not self.public and not self.principal.is_admin:
            raise Forbidden("the server's figures are for admins")


class StatsHandler(FiguresHandler):
    async def get(self) -> None:
        await self.stats.check_database()
        self.write_json(self.stats.snapshot())


class MetricsHandler(FiguresHandler):
    async def prepare(self) -> None:
        self.public = self.context.settings.metrics_public
        await super().prepare()

    async def get(self) -> None:
        await self.stats.check_database()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.stats.registry))


def urls(context: Context, stats: Stats) -> list[tuple[str, type, dict[str, object]]]:
    deps = {"context": context, "stats": stats}
    return [
        (r"/api/v1/stats", StatsHandler, deps),
        (r"/metrics", MetricsHandler, deps),
    ]
