"""The hub: routes each change to the live queries that may see it.

Subscriptions are indexed by collection and tenant (admins under None, meaning every
tenant), so a change only touches subscriptions that could care. For each candidate the hub
compares the document before and after the change with the query and the subscriber's rights:
visible before and after is `changed`, after only is `added`, before only is `removed`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from realtime_app.data.filters import Filter
from realtime_app.data.principal import Principal
from realtime_app.errors import TooManySubscriptions
from realtime_app.live import wire
from realtime_app.live.changefeed import ChangeEvent
from realtime_app.live.outbox import PendingChange

if TYPE_CHECKING:
    from realtime_app.live.outbox import Outbox


class SubscriptionOwner(Protocol):
    """What a subscription needs from its connection."""

    principal: Principal | None
    outbox: Outbox

    def resync(self, subscription: Subscription) -> None: ...


class Subscription:
    """One live query of one connection; the connection owns it, the hub indexes it."""

    def __init__(self, owner: SubscriptionOwner, sub_id: str, collection: str, query: Filter, throttle_ms: int = 0):
        self.owner = owner
        self.id = sub_id
        self.collection = collection
        self.query = query
        self.throttle_s = throttle_ms / 1000.0
        self.head = wire.change_head(sub_id)  # handed to the outbox with each change, for its encoding
        # Subscriptions with equal filters and the same tenant scope see a change alike: the first
        # to judge an event records the verdict on it (`ChangeEvent.verdicts`) for the others.
        self._keyed_for: Principal | None = None
        self._key: tuple[str, str | None] = (query.canonical, None)
        self.floor = 0  # changes at or before this position are already reflected client-side
        self.buffer: list[ChangeEvent] | None = []  # changes held while the snapshot is read
        self.index_tenant: str | None = None
        self.generation = 0  # counts snapshot reads, so only the latest one is applied
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, PendingChange] = {}
        self._release: dict[str, asyncio.TimerHandle] = {}

    def visible(self, doc: dict[str, Any] | None) -> bool:
        principal = self.owner.principal
        return doc is not None and principal is not None and principal.may_see_tenant(doc.get("tenant")) and self.query.matches(doc)

    def offer(self, event: ChangeEvent) -> None:
        if event.position <= self.floor:
            return
        if self.buffer is not None:
            self.buffer.append(event)
            return
        principal = self.owner.principal
        if principal is None or self.owner.outbox.closed:
            return
        if self._keyed_for is not principal:  # a refreshed token may change the tenant scope
            self._keyed_for, self._key = principal, (self.query.canonical, principal.tenant_scope)
        key = self._key
        verdict = event.verdicts.get(key)
        if verdict is None:
            verdict = event.verdicts[key] = (self.visible(event.before), self.visible(event.after))
        had, has = verdict
        if had or has:
            self._emit(PendingChange(self.head, event, had, has, event.position))

    def go_live(self, floor: int) -> None:
        """The snapshot at `floor` has been queued: apply what arrived meanwhile, then stream."""
        buffered, self.buffer = self.buffer or [], None
        self.floor = floor
        for event in buffered:
            self.offer(event)

    def _emit(self, change: PendingChange) -> None:
        doc_id = change.event.doc_id
        if self.throttle_s:
            now = time.monotonic()
            last = self._last_sent.get(doc_id)
            if doc_id in self._held or (last is not None and now - last < self.throttle_s):
                self._hold(doc_id, change, (last or now) + self.throttle_s - now)
                return
            self._last_sent[doc_id] = now
        self.owner.outbox.put_change((self.id, doc_id), self._capped(change))

    def _hold(self, doc_id: str, change: PendingChange, delay: float) -> None:
        held = self._held.get(doc_id)
        if held is not None:
            change.had_before = held.had_before
        self._held[doc_id] = change
        if doc_id not in self._release:
            self._release[doc_id] = asyncio.get_running_loop().call_later(max(delay, 0.0), self._release_held, doc_id)

    def _release_held(self, doc_id: str) -> None:
        self._release.pop(doc_id, None)
        change = self._held.pop(doc_id, None)
        if change is None or change.op is None:
            return
        self._last_sent[doc_id] = time.monotonic()
        self.owner.outbox.put_change((self.id, doc_id), self._capped(change))
        if len(self._last_sent) > 4 * (len(self._held) + 64):
            horizon = time.monotonic() - self.throttle_s
            self._last_sent = {k: t for k, t in self._last_sent.items() if t > horizon}

    def _capped(self, change: PendingChange) -> PendingChange:
        """While changes are held back, report a position before the oldest of them.

        A client resumes from the last position it saw; that position must not pass a change
        it has not received yet, or the resume would skip it.
        """
        if self._held:
            oldest = min(held.event.position for held in self._held.values())
            change.position = min(change.position, oldest - 1)
            change.first_position = min(change.first_position, change.position)
        return change

    def close(self) -> None:
        for handle in self._release.values():
            handle.cancel()
        self._release.clear()
        self._held.clear()


class Hub:
    """Owns the index of live subscriptions; the change feed calls `dispatch` for each event."""

    def __init__(self) -> None:
        self._index: dict[str, dict[str | None, set[Subscription]]] = defaultdict(lambda: defaultdict(set))

    def add(self, subscription: Subscription, tenant: str | None) -> None:
        subscription.index_tenant = tenant
        self._index[subscription.collection][tenant].add(subscription)

    def remove(self, subscription: Subscription) -> None:
        by_tenant = self._index.get(subscription.collection)
        if by_tenant is None:
            return
        subs = by_tenant.get(subscription.index_tenant)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del by_tenant[subscription.index_tenant]
        if not by_tenant:
            del self._index[subscription.collection]

    def dispatch(self, event: ChangeEvent) -> None:
        by_tenant = self._index.get(event.collection)
        if not by_tenant:
            return
        for tenant in {None, *event.tenants}:
            for subscription in tuple(by_tenant.get(tenant, ())):
                subscription.offer(event)

    def resync(self, collections: Iterable[str] | None) -> None:
        """Ask the owners of the affected subscriptions to send fresh snapshots."""
        targets = list(self._subscriptions(collections))
        for subscription in targets:
            subscription.owner.resync(subscription)

    def _subscriptions(self, collections: Iterable[str] | None) -> Iterator[Subscription]:
        names = list(self._index) if collections is None else [c for c in collections if c in self._index]
        for name in names:
            for subs in list(self._index[name].values()):
                yield from list(subs)

    def counts(self) -> dict[str, int]:
        return {name: sum(len(subs) for subs in by_tenant.values()) for name, by_tenant in self._index.items()}


class FilterBudget:
    """What each user's live queries cost to match against every change: the sum of the costs
    of the user's distinct filters (subscriptions with equal filters share one evaluation per
    change, whichever sockets they are on). One user cannot make others wait on its filters
    beyond this bound."""

    def __init__(self, per_user: int):
        self.per_user = per_user
        self._spent: Counter[str] = Counter()
        self._held: Counter[tuple[str, str, str]] = Counter()  # (user, collection, filter) -> subscriptions

    def reserve(self, user: str, collection: str, query: Filter) -> None:
        key = (user, collection, query.canonical)
        if not self._held[key]:
            if self._spent[user] + query.cost > self.per_user:
                raise TooManySubscriptions(f"your live queries' filters would cost {self._spent[user] + query.cost}, over the limit of "
                                           f"{self.per_user} per user; unsubscribe from some or simplify their filters")
            self._spent[user] += query.cost
        self._held[key] += 1

    def release(self, user: str, collection: str, query: Filter) -> None:
        key = (user, collection, query.canonical)
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]
            self._spent[user] -= query.cost
            if self._spent[user] <= 0:
                del self._spent[user]

    def spent(self, user: str) -> int:
        return self._spent[user]
