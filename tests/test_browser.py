"""The dashboard (static/) in real Chromium: sign-in, the live board, a second tab, a viewer's
read-only board, every SockJS transport, a server restart, the REST polling fallback, and
document fields rendered as text.

Playwright's sync API drives headless Chromium (tests/chromium.py). The app servers run on an event loop of their
own in a thread (tests/background.py), so these tests are plain synchronous functions. One
server serves the module; each test gets a tenant of its own (users made with UserStore,
documents made through the REST API), so tests share the server but never see each other's
data, and a browser context of its own. A failed test leaves a screenshot of each of its pages
in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route, expect, sync_playwright

from realtime_app.app import Server
from realtime_app.auth.users import UserStore
from realtime_app.config import Settings
from tests import chromium
from tests.background import BackgroundServer, background_server
from tests.conftest import PHASE_REPORTS
from tests.helpers import server_settings

pytestmark = pytest.mark.browser

TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling", "eventsource", "iframe-eventsource", "iframe-htmlfile",
              "iframe-xhr-polling", "jsonp-polling"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "browser-test-password"
XSS_NAME = "<img src=x onerror=window.__xss=1>"
# Generous: two cores shared with other test runs. Assertions about speed measure explicitly.
WAIT_MS = 10_000


# ---------------------------------------------------------------- REST, from the test's side


def rest(base: str, method: str, path: str, body: Any = None, *, token: str | None = None,
         if_match: int | None = None) -> tuple[int, Any]:
    """One REST call as another client would make it: (status, parsed JSON body or None)."""
    headers = {"Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if if_match is not None:
        headers["If-Match"] = f'"{if_match}"'
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


@dataclass
class Tenant:
    """A tenant of one test: an editor and a viewer who sign in, a token for writes by "another
    client", and the documents it started with."""

    name: str
    base: str
    token: str
    services: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def editor(self) -> str:
        return f"{self.name}-editor"

    @property
    def viewer(self) -> str:
        return f"{self.name}-viewer"

    def call(self, method: str, path: str, body: Any = None, *, if_match: int | None = None, expected: int = 200) -> Any:
        status, reply = rest(self.base, method, path, body, token=self.token, if_match=if_match)
        assert status == expected, (method, path, status, reply)
        return reply

    def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", f"/api/v1/{collection}", body, expected=201)

    def patch(self, collection: str, doc: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return self.call("PATCH", f"/api/v1/{collection}/{doc['id']}", body, if_match=doc["version"])

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        return self.call("GET", f"/api/v1/{collection}/{doc_id}")

    def list(self, collection: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/api/v1/{collection}?limit=500")["items"]


SEED_SERVICES = [("api", "up", 40), ("billing", "degraded", 350), ("search", "down", 900), ("email", "up", 25)]


def make_tenant(background: BackgroundServer, server: Server, base: str) -> Tenant:
    """A fresh tenant on `server` (running on `background`'s loop): users, then documents."""
    assert server.context is not None
    name = "b" + uuid.uuid4().hex[:10]
    tenant = Tenant(name, base, server.context.tokens.issue(f"{name}-feeder", name, ["editor"]))
    users = UserStore(server.context.db)

    async def add_users() -> None:
        await asyncio.gather(users.add(tenant.editor, PASSWORD, name, ["editor"]), users.add(tenant.viewer, PASSWORD, name, ["viewer"]))

    background.run(add_users())
    for service_name, status, ms in SEED_SERVICES:
        tenant.services.append(tenant.create("services", {"name": service_name, "status": status, "response_time_ms": ms}))
    down = next(s for s in tenant.services if s["status"] == "down")
    tenant.incidents.append(tenant.create("incidents", {"service_id": down["id"], "severity": "high",
                                                        "title": "search is down", "resolved": False}))
    tenant.incidents.append(tenant.create("incidents", {"severity": "low", "title": "old hiccup", "resolved": True}))
    return tenant


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def board_server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    with background_server(mongo_uri, tmp_path_factory.mktemp("browser-var")) as background:
        yield background


@pytest.fixture
def tenant(board_server: BackgroundServer) -> Tenant:
    return make_tenant(board_server, board_server.server, board_server.base)


@pytest.fixture
def context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    """A fresh browser context; on failure a screenshot of each page; uncaught page errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page_errors: list[str] = []
    context.on("page", lambda page: page.on("pageerror", lambda error: page_errors.append(f"{page.url}: {error}")))
    yield context
    if any(report.failed for report in request.node.stash.get(PHASE_REPORTS, {}).values()):
        save_screenshots(context, request.node.nodeid)
    context.close()
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def save_screenshots(context: BrowserContext, nodeid: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", nodeid.split("::", 1)[-1])
    for number, page in enumerate(context.pages, 1):
        path = ARTIFACTS / f"{stem}-{number}.png"
        try:
            page.screenshot(path=str(path), full_page=True, timeout=5_000)
        except Exception as exc:  # a screenshot must not hide the test's own failure
            print(f"no screenshot {path}: {exc}")
        else:
            print(f"screenshot: {path}")


# ---------------------------------------------------------------- page helpers


def sign_in(page: Page, base: str, username: str, query: str = "") -> None:
    page.goto(f"{base}/{query}")
    page.fill("#login-username", username)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")


def open_board(context: BrowserContext, tenant: Tenant, username: str | None = None, query: str = "") -> Page:
    """A new tab signed in, live, with the tenant's services on the board."""
    page = context.new_page()
    sign_in(page, tenant.base, username or tenant.editor, query)
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    expect(page.locator("#table-services tr[data-id]")).to_have_count(len(tenant.services), timeout=WAIT_MS)
    return page


def row(page: Page, collection: str, doc_id: str) -> Locator:
    return page.locator(f'#table-{collection} tr[data-id="{doc_id}"]')


def wait_for_version(page: Page, collection: str, doc: dict[str, Any], timeout_ms: int = WAIT_MS) -> float:
    """Seconds until the row shows `doc`'s version (waited for in the page, without expect()'s polling steps)."""
    started = time.monotonic()
    page.wait_for_selector(f'#table-{collection} tr[data-id="{doc["id"]}"][data-version="{doc["version"]}"]',
                           state="attached", timeout=timeout_ms)
    return time.monotonic() - started


def table_state(page: Page, collection: str) -> list[tuple[str, str]]:
    """(id, version) of each row on the board, in order, leaving out rows fading out."""
    pairs = page.locator(f"#table-{collection} tr[data-id]:not(.removing)").evaluate_all(
        "rows => rows.map(r => [r.getAttribute('data-id'), r.getAttribute('data-version')])")
    return [(doc_id, version) for doc_id, version in pairs]


FLASHING = re.compile(r"\bflash\b")


# ---------------------------------------------------------------- tests


def test_login_refuses_a_wrong_password_then_signs_in_and_out(context: BrowserContext, tenant: Tenant) -> None:
    page = context.new_page()
    page.goto(tenant.base + "/")
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    page.fill("#login-username", tenant.editor)
    page.fill("#login-password", "not-the-password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("Wrong username or password")
    expect(page.locator("#app")).to_be_hidden()

    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#login-form")).to_be_hidden()
    expect(page.locator("#login-error")).to_be_empty()
    expect(page.locator("#user-name")).to_have_text(tenant.editor)
    expect(page.locator("#app")).to_have_attribute("data-can-write", "true")
    expect(page.locator("#tenant-switcher")).to_be_hidden()
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)

    held = json.loads(page.evaluate("sessionStorage.getItem('realtime-app.session')"))
    assert rest(tenant.base, "GET", "/api/v1/services", token=held["access_token"])[0] == 200
    page.click("#logout")
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('realtime-app.session')") is None
    # Signing out ended the login session on the server: the tokens the tab held are refused.
    deadline = time.monotonic() + WAIT_MS / 1000
    while rest(tenant.base, "GET", "/api/v1/services", token=held["access_token"])[0] != 401:
        assert time.monotonic() < deadline, "the access token still works after signing out"
        time.sleep(0.05)
    assert rest(tenant.base, "POST", "/api/v1/auth/refresh", {"refresh_token": held["refresh_token"]})[0] == 401


def test_board_shows_the_snapshot(context: BrowserContext, tenant: Tenant) -> None:
    page = open_board(context, tenant)
    by_name = sorted(tenant.services, key=lambda s: s["name"])
    rows = page.locator("#table-services tr[data-id]")
    assert rows.evaluate_all("rs => rs.map(r => r.getAttribute('data-id'))") == [s["id"] for s in by_name]
    for service in by_name:
        service_row = row(page, "services", service["id"])
        expect(service_row).to_have_attribute("data-version", str(service["version"]))
        expect(service_row).to_have_attribute("data-tenant", tenant.name)
        expect(service_row.locator('[data-field="name"]')).to_have_text(service["name"])
        expect(service_row.locator('[data-field="status"]')).to_have_text(service["status"])
        expect(service_row.locator('[data-field="response_time_ms"]')).to_have_text(f"{service['response_time_ms']} ms")
    expect(page.locator("#table-incidents tr[data-id]")).to_have_count(len(tenant.incidents))
    open_incident = row(page, "incidents", tenant.incidents[0]["id"])
    expect(open_incident.locator('[data-field="service_id"]')).to_have_text("search")
    expect(open_incident.locator('[data-field="resolved"]')).to_have_text("open")

    counts = {status: sum(s["status"] == status for s in tenant.services) for status in ("up", "degraded", "down")}
    expect(page.locator("#metric-total")).to_have_attribute("data-value", str(len(tenant.services)))
    for status, count in counts.items():
        expect(page.locator(f"#metric-{status}")).to_have_attribute("data-value", str(count))
    expect(page.locator("#metric-open-incidents")).to_have_attribute("data-value", "1")

    expect(page.locator("#conn-transport")).to_have_attribute("data-transport", "websocket")
    expect(page.locator("#conn-latency")).to_have_attribute("data-latency", re.compile(r"^\d+$"))
    expect(page.locator("#conn-updated")).to_contain_text("Live, updated")
    expect(page.locator("#feed li[data-op]")).to_have_count(0)  # the snapshot is not news


def test_rest_write_by_another_client_appears_within_a_second_and_flashes(context: BrowserContext, tenant: Tenant) -> None:
    page = open_board(context, tenant)
    service = next(s for s in tenant.services if s["status"] == "up")
    service_row = row(page, "services", service["id"])
    expect(service_row).not_to_have_class(FLASHING)

    changed = tenant.patch("services", service, {"status": "down", "response_time_ms": 4321})
    elapsed = wait_for_version(page, "services", changed)
    assert elapsed < 1.0, f"the change took {elapsed:.2f} s to reach the board"
    expect(service_row).to_have_class(FLASHING)
    expect(service_row).to_have_attribute("data-flash", "true")
    expect(service_row.locator('[data-field="status"]')).to_have_text("down")
    expect(service_row.locator('[data-field="response_time_ms"]')).to_have_text("4321 ms")
    expect(page.locator("#metric-down")).to_have_attribute("data-value", "2")
    expect(page.locator(f'#feed li[data-op="changed"][data-id="{service["id"]}"]')).to_contain_text("status up to down")
    expect(page.locator('#toasts .toast[data-kind="down"]')).to_contain_text(f"Service {service['name']} is down")

    added = tenant.create("services", {"name": "zeta", "status": "up"})
    elapsed = wait_for_version(page, "services", added)
    assert elapsed < 1.0, f"the new service took {elapsed:.2f} s to reach the board"
    expect(row(page, "services", added["id"])).to_have_class(FLASHING)
    expect(page.locator("#metric-total")).to_have_attribute("data-value", str(len(tenant.services) + 1))

    tenant.call("DELETE", f"/api/v1/services/{added['id']}", if_match=added["version"], expected=204)
    page.wait_for_selector(f'#table-services tr[data-id="{added["id"]}"].removing', state="attached", timeout=WAIT_MS)
    expect(row(page, "services", added["id"])).to_have_count(0)
    expect(page.locator(f'#feed li[data-op="removed"][data-id="{added["id"]}"]')).to_have_count(1)

    # The highlight is temporary (1.6 s).
    expect(service_row).not_to_have_class(FLASHING, timeout=3_000)
    expect(service_row).not_to_have_attribute("data-flash", "true")


def test_a_second_tab_stays_in_sync(context: BrowserContext, tenant: Tenant) -> None:
    first = open_board(context, tenant)
    second = open_board(context, tenant)  # sessionStorage is per tab: it signs in by itself
    service = tenant.services[0]

    # Edit in the first tab through the form; the second tab follows.
    row(first, "services", service["id"]).locator('button[data-action="edit"]').click()
    expect(first.locator("#form-services")).to_have_attribute("data-mode", "edit")
    first.fill("#services-field-details", "edited in tab one")
    first.click("#form-services-submit")
    expect(first.locator("#form-services")).to_be_hidden()
    edited = tenant.get("services", service["id"])
    assert edited["details"] == "edited in tab one" and edited["version"] == service["version"] + 1
    wait_for_version(second, "services", edited)
    expect(row(second, "services", service["id"]).locator('[data-field="details"]')).to_have_text("edited in tab one")
    expect(row(second, "services", service["id"])).to_have_class(FLASHING)

    # Create in the second tab; the first tab shows it.
    second.click("#new-services")
    expect(second.locator("#form-services")).to_have_attribute("data-mode", "create")
    second.fill("#services-field-name", "made-in-tab-two")
    second.select_option("#services-field-status", "degraded")
    second.click("#form-services-submit")
    expect(second.locator("#form-services")).to_be_hidden()
    made = first.locator("#table-services tr[data-id]", has_text="made-in-tab-two")
    expect(made).to_have_count(1)
    made_id = made.get_attribute("data-id")
    assert made_id
    expect(made.locator('[data-field="status"]')).to_have_text("degraded")

    # Delete it in the first tab (with the inline confirmation); it leaves the second tab too.
    made.locator('button[data-action="delete"]').click()
    made.locator('button[data-action="confirm-delete"]').click()
    expect(row(second, "services", made_id)).to_have_count(0)
    expect(row(first, "services", made_id)).to_have_count(0)

    expect(first.locator("#metric-total")).to_have_attribute("data-value", str(len(tenant.services)))
    expected = sorted((s["id"], str(s["version"])) for s in tenant.list("services"))
    assert sorted(table_state(first, "services")) == expected
    assert sorted(table_state(second, "services")) == expected


def test_viewer_sees_no_edit_controls_and_the_server_refuses_its_writes(context: BrowserContext, tenant: Tenant) -> None:
    page = open_board(context, tenant, tenant.viewer)
    expect(page.locator("#table-incidents tr[data-id]")).to_have_count(len(tenant.incidents))
    expect(page.locator("#app")).to_have_attribute("data-can-write", "false")
    expect(page.locator("#new-services")).to_be_hidden()
    expect(page.locator("#new-incidents")).to_be_hidden()
    expect(page.locator("#table-services button, #table-incidents button")).to_have_count(0)
    expect(page.locator("#app button[data-action]:visible")).to_have_count(0)
    expect(page.locator("#app th.actions, #app td.actions")).to_have_count(0)
    expect(page.locator("#form-services, #form-incidents")).to_have_count(0)

    # The controls are only hidden: the server itself must refuse the viewer's token.
    service = tenant.services[0]
    statuses = page.evaluate(
        """async ([id, version]) => {
            const token = JSON.parse(sessionStorage.getItem('realtime-app.session')).access_token;
            const call = async (method, path, body, extra) => (await fetch('/api/v1/' + path, {
                method, body: body && JSON.stringify(body),
                headers: Object.assign({'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'}, extra || {}),
            })).status;
            return {
                read: await call('GET', 'services/' + id),
                create: await call('POST', 'services', {name: 'sneaky', status: 'up'}),
                patch: await call('PATCH', 'services/' + id, {status: 'down'},
                                  {'Content-Type': 'application/merge-patch+json', 'If-Match': '"' + version + '"'}),
                replace: await call('PUT', 'services/' + id, {name: 'sneaky', status: 'down'}),
                remove: await call('DELETE', 'services/' + id),
            };
        }""",
        [service["id"], service["version"]],
    )
    assert statuses == {"read": 200, "create": 403, "patch": 403, "replace": 403, "remove": 403}, statuses
    assert tenant.get("services", service["id"]) == service
    assert len(tenant.list("services")) == len(tenant.services)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_transport_delivers_live_updates(context: BrowserContext, tenant: Tenant, transport: str) -> None:
    page = open_board(context, tenant, query=f"?transport={transport}")
    expect(page.locator("#conn-transport")).to_have_attribute("data-transport", transport)
    service = tenant.services[0]
    changed = tenant.patch("services", service, {"details": f"over {transport}"})
    wait_for_version(page, "services", changed, timeout_ms=5_000)
    expect(row(page, "services", service["id"]).locator('[data-field="details"]')).to_have_text(f"over {transport}")
    added = tenant.create("services", {"name": f"new over {transport}", "status": "up"})
    wait_for_version(page, "services", added, timeout_ms=5_000)
    expect(page.locator("#conn-latency")).to_have_attribute("data-latency", re.compile(r"^\d+$"))
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live")


# Every value #conn-state takes, in order, from page load on.
RECORD_STATES = """
    window.__states = [];
    document.addEventListener('DOMContentLoaded', () => {
        const node = document.getElementById('conn-state');
        new MutationObserver(() => {
            const state = node.getAttribute('data-state');
            if (window.__states[window.__states.length - 1] !== state) { window.__states.push(state); }
        }).observe(node, {attributes: true, attributeFilter: ['data-state']});
    });
"""


def test_server_restart_shows_reconnecting_then_live_with_no_change_missed(
        context: BrowserContext, board_server: BackgroundServer, mongo_uri: str, tmp_path: Path) -> None:
    """The page's server stops and starts again on the same port; meanwhile another server on
    the same database takes a write. The board says so, comes back live and shows the write."""
    db_name = f"test_{uuid.uuid4().hex[:12]}"

    def settings(**overrides: Any) -> Settings:
        return server_settings(mongo_uri, tmp_path, mongo_db=db_name, shutdown_reconnect_after_ms=200, **overrides)

    started: list[Server] = []

    def start(server: Server) -> Server:
        started.append(server)
        board_server.run(server.start())
        return server

    try:
        primary = start(Server(settings()))
        other = start(Server(settings()))
        base = f"http://127.0.0.1:{primary.port}"
        tenant = make_tenant(board_server, primary, base)
        context.add_init_script(RECORD_STATES)
        page = open_board(context, tenant)

        board_server.run(primary.stop())
        expect(page.locator("#conn-state")).to_have_attribute("data-state", re.compile("reconnecting|polling"), timeout=5_000)
        # Written while the page's server is down, through the other one.
        writer = Tenant(tenant.name, f"http://127.0.0.1:{other.port}", tenant.token)
        changed = writer.patch("services", tenant.services[0], {"status": "down", "details": "while you were away"})
        added = writer.create("services", {"name": "born-while-away", "status": "up"})

        start(Server(settings(port=primary.port)))
        expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        wait_for_version(page, "services", changed)
        wait_for_version(page, "services", added)
        expect(row(page, "services", changed["id"]).locator('[data-field="details"]')).to_have_text("while you were away")
        assert sorted(table_state(page, "services")) == sorted((s["id"], str(s["version"])) for s in writer.list("services"))
        states = page.evaluate("window.__states")
        assert "reconnecting" in states, states
        went_away = states.index("live") + 1
        assert states[went_away] == "reconnecting" and states[-1] == "live", states
    finally:
        for server in reversed(started):
            board_server.run(server.stop())
        with pymongo.MongoClient(mongo_uri) as mongo:
            mongo.drop_database(db_name)


def test_a_write_straight_into_mongodb_shows_too(context: BrowserContext, tenant: Tenant, board_server: BackgroundServer,
                                                 mongo_uri: str) -> None:
    """Another program may write to the database without the API, and without bumping `version`:
    the board must still show the change, not take it for one it already has."""
    page = open_board(context, tenant)
    service = tenant.services[0]
    with pymongo.MongoClient(mongo_uri) as client:
        services = client[board_server.server.settings.mongo_db]["services"]
        services.update_one({"_id": ObjectId(service["id"])}, {"$set": {"details": "written by another program"}})
        inserted = services.insert_one({"name": "direct", "status": "down", "tenant": tenant.name, "version": 1}).inserted_id
    service_row = row(page, "services", service["id"])
    expect(service_row.locator('[data-field="details"]')).to_have_text("written by another program")
    expect(service_row).to_have_attribute("data-version", str(service["version"]))
    expect(service_row).to_have_class(FLASHING)
    expect(row(page, "services", str(inserted)).locator('[data-field="status"]')).to_have_text("down")
    expect(page.locator("#metric-down")).to_have_attribute("data-value", "2")


def test_blocked_socket_falls_back_to_rest_polling(context: BrowserContext, tenant: Tenant) -> None:
    context.route("**/realtime/**", lambda route: route.abort())
    page = context.new_page()
    sign_in(page, tenant.base, tenant.editor)
    # Three failed attempts, with backoff between them: a few seconds.
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "polling", timeout=20_000)
    expect(page.locator("#conn-state")).to_contain_text("Polling")
    expect(page.locator("#conn-transport")).to_have_attribute("data-transport", "rest-polling")
    expect(page.locator('#toasts .toast[data-kind="warn"]')).to_contain_text("Polling the server")
    expect(page.locator("#conn-retry")).to_be_visible()
    expect(page.locator("#table-services tr[data-id]")).to_have_count(len(tenant.services))

    service = tenant.services[0]
    changed = tenant.patch("services", service, {"status": "degraded", "details": "seen by polling"})
    wait_for_version(page, "services", changed, timeout_ms=12_000)
    expect(row(page, "services", service["id"]).locator('[data-field="details"]')).to_have_text("seen by polling")
    expect(page.locator(f'#feed li[data-op="changed"][data-id="{service["id"]}"]')).to_have_count(1)
    expect(page.locator("#conn-updated")).to_contain_text("Polling, updated")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "polling")

    # Once the path is open again, "Retry now" brings the live link back.
    context.unroute("**/realtime/**")
    page.click("#conn-retry")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    again = tenant.patch("services", changed, {"details": "live again"})
    wait_for_version(page, "services", again, timeout_ms=2_000)


def test_document_fields_render_as_text(context: BrowserContext, tenant: Tenant) -> None:
    before = tenant.create("services", {"name": XSS_NAME, "status": "up", "details": "<b>bold</b><script>window.__xss=2</script>"})
    tenant.services.append(before)
    page = open_board(context, tenant)
    snapshot_row = row(page, "services", before["id"])
    expect(snapshot_row.locator('[data-field="name"]')).to_have_text(XSS_NAME)
    expect(snapshot_row.locator('[data-field="details"]')).to_have_text("<b>bold</b><script>window.__xss=2</script>")

    live = tenant.create("services", {"name": XSS_NAME + "<svg onload=window.__xss=3>", "status": "up"})
    wait_for_version(page, "services", live)
    expect(row(page, "services", live["id"]).locator('[data-field="name"]')).to_have_text(XSS_NAME + "<svg onload=window.__xss=3>")
    down = tenant.patch("services", before, {"status": "down"})
    wait_for_version(page, "services", down)
    expect(page.locator('#toasts .toast[data-kind="down"]')).to_contain_text(f"Service {XSS_NAME} is down")
    expect(page.locator(f'#feed li[data-id="{live["id"]}"]')).to_contain_text(XSS_NAME)
    incident = tenant.create("incidents", {"service_id": before["id"], "severity": "critical", "title": XSS_NAME, "resolved": False})
    incident_row = row(page, "incidents", incident["id"])
    expect(incident_row.locator('[data-field="title"]')).to_have_text(XSS_NAME)
    expect(incident_row.locator('[data-field="service_id"]')).to_have_text(XSS_NAME)
    expect(page.locator('#toasts .toast[data-kind="down"]', has_text="Critical incident")).to_contain_text(XSS_NAME)

    snapshot_row.locator('button[data-action="edit"]').click()
    expect(page.locator("#services-field-name")).to_have_value(XSS_NAME)
    expect(page.locator("#form-services legend")).to_contain_text(XSS_NAME)

    page.wait_for_timeout(200)  # an injected <img src=x> would have failed to load by now
    expect(page.locator("body img, body svg, body b, #app script, #feed script")).to_have_count(0)
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_the_board_retries_the_list_of_collections(context: BrowserContext, tenant: Tenant) -> None:
    """The tables come from GET /api/v1/collections: when it fails the page says so, and tries again."""
    failed: list[str] = []

    def fail_once(route: Route) -> None:
        if failed:
            route.continue_()
            return
        failed.append(route.request.url)
        route.fulfill(status=503, content_type="application/problem+json", body=json.dumps(
            {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "the database is not answering"}))

    context.route("**/api/v1/collections", fail_once)
    page = context.new_page()
    sign_in(page, tenant.base, tenant.editor)
    expect(page.locator("#app-status")).to_contain_text("Could not load the list of collections (the database is not answering)")
    expect(page.locator("#table-services tr[data-id]")).to_have_count(len(tenant.services), timeout=WAIT_MS)
    expect(page.locator("#app-status")).to_be_empty()
    assert len(failed) == 1


# ---------------------------------------------------------------- a server with collections of its own

# Not the demo's: an enum, a number with bounds, a required field, a reference, a boolean.
CUSTOM_RESOURCES = {"collections": [
    {"name": "warehouses",
     "schema": {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}, "city": {"type": "string"}},
                "required": ["name"]},
     "permissions": {"read": ["viewer", "editor"], "write": ["editor"]},
     "sortable": ["name"]},
    {"name": "orders",
     "schema": {"type": "object", "properties": {
         "customer": {"type": "string", "minLength": 1, "maxLength": 100},
         "state": {"enum": ["open", "paid", "shipped"]},
         "total": {"type": "number", "minimum": 0, "maximum": 10000},
         "warehouse_id": {"type": "string"},
         "gift": {"type": "boolean"}},
         "required": ["customer", "state"]},
     "permissions": {"read": ["viewer", "editor"], "write": ["editor"]},
     "sortable": ["customer", "created_at"],
     "references": {"warehouse_id": "warehouses"}},
]}


@pytest.fixture(scope="module")
def custom_server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    folder = tmp_path_factory.mktemp("browser-custom")
    (folder / "resources.json").write_text(json.dumps(CUSTOM_RESOURCES))
    with background_server(mongo_uri, folder, resources_file=str(folder / "resources.json")) as background:
        yield background


@dataclass
class Shop(Tenant):
    """A tenant of the custom server."""

    warehouses: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def shop(custom_server: BackgroundServer) -> Shop:
    """Two warehouses and an order from the first, in a tenant of the custom server."""
    server = custom_server.server
    assert server.context is not None
    name = "c" + uuid.uuid4().hex[:10]
    shop = Shop(name, custom_server.base, server.context.tokens.issue(f"{name}-feeder", name, ["editor"]))
    custom_server.run(UserStore(server.context.db).add(shop.editor, PASSWORD, name, ["editor"]))
    shop.warehouses = [shop.create("warehouses", {"name": "north", "city": "Oslo"}), shop.create("warehouses", {"name": "south"})]
    shop.orders = [shop.create("orders", {"customer": "grace", "state": "open", "total": 12.5, "warehouse_id": shop.warehouses[0]["id"]})]
    return shop


def open_shop(context: BrowserContext, shop: Shop) -> Page:
    page = context.new_page()
    sign_in(page, shop.base, shop.editor)
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    expect(page.locator("#table-orders tr[data-id]")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#table-warehouses tr[data-id]")).to_have_count(2)
    return page


def test_declared_collections_get_tables_and_forms_that_write_live(context: BrowserContext, shop: Shop) -> None:
    first = open_shop(context, shop)
    second = open_shop(context, shop)
    # No demo collections: no tiles, no chart, no demo tables.
    expect(first.locator("#metrics")).to_be_hidden()
    expect(first.locator("#chart-panel")).to_be_hidden()
    expect(first.locator("#table-services, #table-incidents")).to_have_count(0)
    headings = first.locator("#table-orders thead th[data-field]").all_inner_texts()
    assert [h.lower() for h in headings] == ["customer", "state", "total", "warehouse", "gift", "updated"], headings
    order = row(first, "orders", shop.orders[0]["id"])
    expect(order.locator('[data-field="state"] .badge')).to_have_text("open")
    expect(order.locator('[data-field="total"]')).to_have_text("12.5")

    # The form follows the schema.
    first.click("#new-orders")
    form = first.locator("#form-orders")
    expect(form).to_have_attribute("data-mode", "create")
    assert first.locator("#orders-field-state option").all_inner_texts() == ["open", "paid", "shipped"]
    expect(first.locator("#orders-field-total")).to_have_attribute("type", "number")
    expect(first.locator("#orders-field-total")).to_have_attribute("max", "10000")
    assert first.locator("#orders-field-warehouse_id option").all_inner_texts() == ["(none)", "north", "south"]
    expect(first.locator("#orders-field-gift")).to_have_attribute("type", "checkbox")
    expect(first.locator("label[for='orders-field-customer']")).to_contain_text("(required)")

    # A required field left empty is caught in the page; a bound the server checks comes back as a
    # 422 whose error shows next to its field.
    first.click("#form-orders-submit")
    expect(first.locator("#orders-error-customer")).to_have_text("Enter a customer.")
    first.fill("#orders-field-customer", "ada")
    first.select_option("#orders-field-state", "paid")
    first.fill("#orders-field-total", "20000")
    first.select_option("#orders-field-warehouse_id", label="south")
    first.click("#form-orders-submit")
    expect(first.locator("#orders-error-total")).to_contain_text("20000 is greater than the maximum of 10000")
    expect(first.locator("#orders-field-total")).to_have_attribute("aria-invalid", "true")
    expect(first.locator("#orders-error-customer")).to_be_empty()
    expect(form).to_be_visible()
    assert len(shop.list("orders")) == 1

    first.fill("#orders-field-total", "250.5")
    first.click("#form-orders-submit")
    expect(form).to_be_hidden()
    made = next(o for o in shop.list("orders") if o["customer"] == "ada")
    assert (made["state"], made["total"], made["warehouse_id"], made["gift"]) == ("paid", 250.5, shop.warehouses[1]["id"], False)
    wait_for_version(second, "orders", made)
    live = row(second, "orders", made["id"])
    expect(live.locator('[data-field="customer"]')).to_have_text("ada")
    expect(live.locator('[data-field="state"]')).to_have_text("paid")
    expect(live.locator('[data-field="total"]')).to_have_text("250.5")
    expect(live.locator('[data-field="warehouse_id"]')).to_have_text("south")
    expect(live).to_have_class(FLASHING)

    # Edited in the second tab; the first follows.
    live.locator('button[data-action="edit"]').click()
    expect(second.locator("#orders-field-state")).to_have_value("paid")
    expect(second.locator("#orders-field-total")).to_have_value("250.5")
    second.select_option("#orders-field-state", "shipped")
    second.check("#orders-field-gift")
    second.select_option("#orders-field-warehouse_id", label="(none)")
    second.click("#form-orders-submit")
    expect(second.locator("#form-orders")).to_be_hidden()
    edited = shop.get("orders", made["id"])
    assert (edited["state"], edited["gift"], "warehouse_id" in edited) == ("shipped", True, False), edited
    wait_for_version(first, "orders", edited)
    expect(row(first, "orders", made["id"]).locator('[data-field="gift"]')).to_have_text("yes")
    expect(row(first, "orders", made["id"]).locator('[data-field="warehouse_id"]')).to_have_text("")
    expect(first.locator(f'#feed li[data-op="changed"][data-id="{made["id"]}"]')).to_contain_text("state paid to shipped")


def test_a_reference_shows_the_referenced_name_and_follows_it_live(context: BrowserContext, shop: Shop) -> None:
    page = open_shop(context, shop)
    north = shop.warehouses[0]
    order = shop.orders[0]
    cell = row(page, "orders", order["id"]).locator('[data-field="warehouse_id"]')
    expect(cell).to_have_text("north")
    expect(cell).to_have_attribute("title", north["id"])

    renamed = shop.patch("warehouses", north, {"name": "north <b>hub</b>"})
    expect(cell).to_have_text("north <b>hub</b>")
    assert shop.get("orders", order["id"])["version"] == order["version"]  # the order itself did not change

    shop.call("DELETE", f"/api/v1/warehouses/{north['id']}", if_match=renamed["version"], expected=204)
    expect(cell).to_have_text(north["id"])  # a reference to a document out of view shows its id


def test_an_incident_shows_its_service_by_name_as_it_is_renamed(context: BrowserContext, tenant: Tenant) -> None:
    page = open_board(context, tenant)
    incident = tenant.incidents[0]
    service = next(s for s in tenant.services if s["id"] == incident["service_id"])
    cell = row(page, "incidents", incident["id"]).locator('[data-field="service_id"]')
    expect(cell).to_have_text(service["name"])
    tenant.patch("services", service, {"name": "search-v2"})
    expect(cell).to_have_text("search-v2")
    row(page, "incidents", incident["id"]).locator('button[data-action="edit"]').click()
    expect(page.locator("#incidents-field-service_id option:checked")).to_have_text("search-v2")


# The colour of the highest series pixel on the chart: the line drawn highest, of the largest value.
TOPMOST_SERIES_COLOR = """
    (colors) => {
        const canvas = document.getElementById('chart');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const rgb = colors.map(c => [1, 3, 5].map(i => parseInt(c.slice(i, i + 2), 16)));
        const near = (at, [r, g, b]) => Math.abs(data[at] - r) < 30 && Math.abs(data[at + 1] - g) < 30 && Math.abs(data[at + 2] - b) < 30;
        for (let y = 0; y < canvas.height; y++) {
            for (let x = 0; x < canvas.width; x++) {
                const at = (y * canvas.width + x) * 4;
                const hit = rgb.findIndex(c => near(at, c));
                if (hit >= 0) { return colors[hit]; }
            }
        }
        return null;
    }
"""


def wait_for_topmost_series(page: Page, colors: list[str], wanted: str | None) -> None:
    page.wait_for_function(f"([colors, wanted]) => ({TOPMOST_SERIES_COLOR})(colors) === wanted", arg=[colors, wanted], timeout=WAIT_MS)


def test_the_chart_draws_response_times_as_they_change(context: BrowserContext, tenant: Tenant) -> None:
    page = open_board(context, tenant)
    expect(page.locator("#chart-panel")).to_be_visible()
    legend = page.locator("#chart-legend li[data-id]")
    expect(legend).to_have_count(len(tenant.services))
    for service in tenant.services:
        item = page.locator(f'#chart-legend li[data-id="{service["id"]}"]')
        expect(item).to_have_attribute("data-value", str(service["response_time_ms"]))
        expect(item).to_contain_text(f"{service['name']} {service['response_time_ms']} ms")
    colors = legend.evaluate_all("items => items.map(i => i.getAttribute('data-color'))")
    assert len(set(colors)) == len(colors)
    slowest = max(tenant.services, key=lambda s: s["response_time_ms"])
    color_of = {s["id"]: page.locator(f'#chart-legend li[data-id="{s["id"]}"]').get_attribute("data-color") for s in tenant.services}
    wait_for_topmost_series(page, colors, color_of[slowest["id"]])

    fastest = min(tenant.services, key=lambda s: s["response_time_ms"])
    tenant.patch("services", fastest, {"response_time_ms": 5000})
    item = page.locator(f'#chart-legend li[data-id="{fastest["id"]}"]')
    expect(item).to_have_attribute("data-value", "5000")
    expect(item).to_have_attribute("data-changes", "2")
    expect(item).to_contain_text("5000 ms")
    # Now the fastest service's line is the one drawn on top.
    wait_for_topmost_series(page, colors, color_of[fastest["id"]])

    added = tenant.create("services", {"name": "new", "status": "up", "response_time_ms": 10})
    expect(page.locator(f'#chart-legend li[data-id="{added["id"]}"]')).to_contain_text("new 10 ms")
    tenant.call("DELETE", f"/api/v1/services/{added['id']}", if_match=added["version"], expected=204)
    expect(page.locator(f'#chart-legend li[data-id="{added["id"]}"]')).to_have_count(0)
