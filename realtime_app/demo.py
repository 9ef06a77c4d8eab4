"""Demo mode: users in two tenants and a few documents, created only in an empty database."""

from __future__ import annotations

import logging
import random

from realtime_app.auth.users import UserStore
from realtime_app.data.principal import Principal
from realtime_app.data.store import DocumentStore

log = logging.getLogger(__name__)

DEMO_USERS = [
    ("admin", "admin-demo-passphrase", "acme", ["admin"]),
    ("acme-editor", "editor-demo-passphrase", "acme", ["editor"]),
    ("acme-viewer", "viewer-demo-passphrase", "acme", ["viewer"]),
    ("globex-editor", "editor-demo-passphrase", "globex", ["editor"]),
    ("globex-viewer", "viewer-demo-passphrase", "globex", ["viewer"]),
]
DEMO_SERVICES = {
    "acme": ["api-gateway", "auth", "billing", "search", "email", "reports"],
    "globex": ["web", "database", "queue", "cdn"],
}


async def seed(users: UserStore, store: DocumentStore) -> bool:
    """Create the demo users and documents when there are no users yet; True if it did."""
    if await users.count():
        return False
    for username, password, tenant, roles in DEMO_USERS:
        await users.add(username, password, tenant, roles)
    rng = random.Random(7)
    for tenant, names in DEMO_SERVICES.items():
        editor = Principal(f"{tenant}-editor", tenant, frozenset({"editor"}), 0.0)
        for name in names:
            status = rng.choice(["up", "up", "up", "degraded", "down"])
            service = await store.create(editor, "services", {
                "name": name, "status": status, "response_time_ms": rng.randint(20, 400),
                "details": f"{name} in {tenant}",
            })
            if status != "up":
                await store.create(editor, "incidents", {
                    "service_id": service["id"], "severity": "high" if status == "down" else "medium",
                    "title": f"{name} is {status}", "resolved": False,
                })
    log.info("demo data created: %d users, %d services", len(DEMO_USERS), sum(map(len, DEMO_SERVICES.values())))
    return True


def logins_banner() -> str:
    rows = [f"    {u:<15} {p:<24} {', '.join(r)} in {t}" for u, p, t, r in DEMO_USERS]
    return "Demo logins (username, password, roles):\n" + "\n".join(rows)
