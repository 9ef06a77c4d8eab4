"""Health, readiness and the OpenAPI description."""

from __future__ import annotations

from handlers.base import APIHandler
from realtime_app.openapi import openapi_document


class HealthHandler(APIHandler):
    public = True
    probe = True

    async def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(APIHandler):
    public = True
    probe = True

    async def get(self) -> None:
        reasons = await self.context.not_ready_reasons()
        if reasons:
            self.write_json({"status": "unavailable", "reasons": reasons}, 503)
        else:
            self.write_json({"status": "ready"})


class OpenAPIHandler(APIHandler):
    public = True

    async def get(self) -> None:
        self.write_json(openapi_document(self.context.resources, self.context.settings.list_max_limit))


def urls(context: object) -> list[tuple[str, type, dict[str, object]]]:
    deps = {"context": context}
    return [
        (r"/api/v1/health", HealthHandler, deps),
        (r"/api/v1/ready", ReadyHandler, deps),
        (r"/api/v1/openapi\.json", OpenAPIHandler, deps),
    ]
