"""``examples/fastapi_app.py``: the service's async endpoints called over HTTP (httpx, in-process ASGI) against
the real server, each answer checked against the sync API on the same database."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import vectorpg

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"
TEXTS = {
    "pg": ("PostgreSQL keeps vectors next to the rows", "en"),
    "cats": ("Cats sleep sixteen hours a day", "en"),
    "dogs": ("Dogs like to play fetch in the park", "en"),
    "chats": ("Les chats dorment beaucoup", "fr"),
}
pytestmark = pytest.mark.embedder


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # SQLAlchemy and FastAPI resolve the module's annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    service = _module().create_app(database_url)
    transport = httpx.ASGITransport(app=service)
    async with (
        service.router.lifespan_context(service),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        yield http


async def test_collection_endpoints(client: httpx.AsyncClient, db: vectorpg.Database) -> None:
    body = {
        "texts": [t for t, _ in TEXTS.values()],
        "ids": list(TEXTS),
        "metadata": [{"lang": g} for _, g in TEXTS.values()],
    }
    assert (await client.post("/documents", json=body)).json() == {"ids": list(TEXTS)}
    docs = db.collection("fastapi_docs")  # the same collection through the sync API
    for q, lang in (("how long do cats sleep?", "en"), ("where are vectors stored?", None), ("chats", "fr")):
        params: dict[str, Any] = {"q": q, "k": 3} | ({"lang": lang} if lang else {})
        got = (await client.get("/search", params=params)).json()
        expected = docs.search(q, k=3, where={"lang": lang} if lang else None)
        assert [h["id"] for h in got] == [h.id for h in expected]
        assert [h["distance"] for h in got] == pytest.approx([h.distance for h in expected])
    hybrid = (await client.get("/hybrid", params={"q": "cats sleep", "k": 2})).json()
    assert hybrid[0]["id"] == "cats"
    # many requests at once share the one pool
    answers = await asyncio.gather(*(client.get("/search", params={"q": "dogs", "k": 2}) for _ in range(20)))
    assert {tuple(h["id"] for h in a.json()) for a in answers} == {tuple(h.id for h in docs.search("dogs", k=2))}


async def test_the_apps_own_model(client: httpx.AsyncClient, db: vectorpg.Database) -> None:
    rows = [
        {"id": 1, "title": "Vector search inside PostgreSQL", "lang": "en"},
        {"id": 2, "title": "Chats et chiens", "lang": "fr"},
        {"id": 3, "title": "Gardening in small spaces", "lang": "en"},
    ]
    assert (await client.post("/articles", json=rows)).json() == {"written": 3}
    found = (await client.get("/articles/search", params={"q": "database vectors", "k": 2, "lang": "en"})).json()
    assert [a["id"] for a in found] == [1, 3] and {a["lang"] for a in found} == {"en"}
    assert (await client.get("/articles/hybrid", params={"q": "chiens"})).json()[0]["id"] == 2
    with db.engine.connect() as conn:  # committed: visible from another connection
        assert conn.exec_driver_sql("SELECT count(*) FROM fastapi_articles").scalar() == 3


async def test_bad_input_is_a_422_naming_the_error(client: httpx.AsyncClient) -> None:
    empty = await client.post("/documents", json={"texts": ["fine", "  "]})
    assert empty.status_code == 422 and empty.json()["error"] == "InvalidInputError"
    bad_filter = await client.get("/search", params={"q": "x", "k": 0})
    assert bad_filter.status_code == 422 and bad_filter.json()["error"] == "InvalidArgumentError"
    assert (await client.get("/search", params={"q": "anything"})).json() == []  # nothing was written
