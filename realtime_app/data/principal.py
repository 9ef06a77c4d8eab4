"""Who is asking: the verified claims of a token, and the tenant rule that follows from them."""

from __future__ import annotations

from dataclasses import dataclass

from realtime_app.data.resources import Resource
from realtime_app.errors import Forbidden


@dataclass(frozen=True)
class Principal:
    user: str
    tenant: str
    roles: frozenset[str]
    expires_at: float
    epoch: int | None = None
    """The user's token epoch when the token was issued (tokens this server issues carry it)."""
    family: str | None = None
    """The login session the token belongs to, if it came from a login."""
    issued_at: float | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def tenant_scope(self) -> str | None:
        """The one tenant this principal is confined to, or None for an admin (all tenants)."""
        return None if self.is_admin else self.tenant

    def may_see_tenant(self, tenant: object) -> bool:
        return self.is_admin or tenant == self.tenant

    def require_read(self, resource: Resource) -> None:
        if not resource.may_read(self.roles):
            raise Forbidden(f"your roles may not read {resource.name}")

    def require_write(self, resource: Resource) -> None:
        if not resource.may_write(self.roles):
            raise Forbidden(f"your roles may not write {resource.name}")
