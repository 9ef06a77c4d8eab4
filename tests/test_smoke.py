from tests.helpers import ApiClient


async def test_health_and_create_roundtrip(api: ApiClient) -> None:
    assert (await api.get("/api/v1/health")).body == {"status": "ok"}
    token = api.token()
    created = await api.post("/api/v1/services", {"name": "a", "status": "up"}, token=token)
    assert created.status == 201, created.body
    fetched = await api.get(f"/api/v1/services/{created.body['id']}", token=token)
    assert fetched.body == created.body
