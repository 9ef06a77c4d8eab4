"""CRUD over the served collections: /api/v1/{collection} and /api/v1/{collection}/{id}."""

from __future__ import annotations

from handlers.base import APIHandler
from realtime_app.data.store import etag, parse_if_match


class CollectionsHandler(APIHandler):
    async def get(self) -> None:
        readable = [r.public(self.principal.roles) for r in self.context.resources if r.may_read(self.principal.roles)]
        self.write_json({"items": readable})


class DocumentListHandler(APIHandler):
    async def get(self, collection: str) -> None:
        items, next_cursor = await self.context.store.list_page(
            self.principal, collection,
            filter_json=self.get_query_argument("filter", None),
            sort=self.get_query_argument("sort", None),
            limit=self.get_query_argument("limit", None),
            after=self.get_query_argument("after", None),
        )
        self.write_json({"items": items, "next": next_cursor})

    async def post(self, collection: str) -> None:
        doc = await self.context.store.create(self.principal, collection, self.json_body())
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{doc['id']}")
        self.set_header("ETag", etag(doc["version"]))
        self.write_json(doc, 201)


class DocumentHandler(APIHandler):
    async def get(self, collection: str, doc_id: str) -> None:
        doc = await self.context.store.get(self.principal, collection, doc_id)
        self.set_header("ETag", etag(doc["version"]))
        self.write_json(doc)

    async def put(self, collection: str, doc_id: str) -> None:
        doc = await self.context.store.replace(self.principal, collection, doc_id, self.json_body(), self._if_match())
        self.set_header("ETag", etag(doc["version"]))
        self.write_json(doc)

    async def patch(self, collection: str, doc_id: str) -> None:
        doc = await self.context.store.patch(self.principal, collection, doc_id, self.json_body(), self._if_match())
        self.set_header("ETag", etag(doc["version"]))
        self.write_json(doc)

    async def delete(self, collection: str, doc_id: str) -> None:
        await self.context.store.delete(self.principal, collection, doc_id, self._if_match())
        self.set_status(204)
        self.finish()

    def _if_match(self) -> set[int] | None:
        return parse_if_match(self.request.headers.get("If-Match"))


def urls(context: object) -> list[tuple[str, type, dict[str, object]]]:
    deps = {"context": context}
    return [
        (r"/api/v1/collections", CollectionsHandler, deps),
        (r"/api/v1/([^/]+)/?", DocumentListHandler, deps),
        (r"/api/v1/([^/]+)/([^/]+)", DocumentHandler, deps),
    ]
