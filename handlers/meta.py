"""Health, readiness and the OpenAPI description."""

from __future__ import annotations

import logging

from handlers.base import APIHandler
from realtime_app.errors import Unauthorized
from realtime_app.openapi import openapi_document

log = logging.getLogger("realtime_app.http")


class HealthHandler(APIHandler):
    public = True
    probe = True

    async def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(APIHandler):
    """Anyone may ask; the errors behind the reasons (driver text, addresses) are for admins,
    who send their token, and for the log."""

    public = True
    probe = True

    async def get(self) -> None:
        not_ready = await self.context.not_ready_reasons()
        if not not_ready:
            self.write_json({"status": "ready"})
            return
        for item in not_ready:
            log.warning("not ready: %s (%s)", item.reason, item.detail)
        detailed = self._from_admin()
        reasons = [f"{item.reason} ({item.detail})" if detailed and item.detail else item.reason for item in not_ready]
        self.write_json({"status": "unavailable", "reasons": reasons}, 503)

    def _from_admin(self) -> bool:
        try:
            return self.context.auth.principal(self._bearer_token()).is_admin
        except Unauthorized:
            return False


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
