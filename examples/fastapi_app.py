"""A FastAPI service on vectorpg's async API: ingest, filtered search and hybrid search over a collection and
over the application's own SQLAlchemy model.

    uvicorn examples.fastapi_app:app               # serve it (pip install fastapi uvicorn)
    python examples/fastapi_app.py                 # or: a demo that calls each endpoint in-process

Every endpoint is a coroutine over :mod:`vectorpg.aio` (one AsyncEngine pool shared by all requests); a text is
embedded by the packaged all-MiniLM-L6-v2 model in a worker thread, so requests go on meanwhile. Bad input
(a wrong filter, an empty text, a NaN) is a vectorpg error, answered as 422 with its message. Uses the embedded
PostgreSQL unless VECTORPG_URL is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
import vectorpg.aio
from vectorpg import vector_column


class Base(DeclarativeBase):
    pass


class Article(Base):
    """The application's own model: a title, a language and the title's embedding."""

    __tablename__ = "fastapi_articles"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String)
    lang: Mapped[str] = mapped_column(String(8))
    embedding: Mapped[np.ndarray] = vector_column(384)


class NewDocuments(BaseModel):
    texts: list[str]
    ids: list[str] | None = None
    metadata: list[dict[str, Any]] | None = None


class NewArticle(BaseModel):
    id: int
    title: str
    lang: str = Field(max_length=8)


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session (a dependency: each endpoint that asks for it gets the same one)."""
    async with request.app.state.db.session() as s:
        yield s


Session = Annotated[AsyncSession, Depends(session)]


def articles(request: Request, s: Session) -> vectorpg.aio.Repository[Article]:
    """The app's own model over the request's session, so the app commits what it wrote."""
    return vectorpg.aio.Repository(Article, s, embedder=request.app.state.docs.embedder, text_column="title")


Articles = Annotated[Any, Depends(articles)]


def create_app(url: str | None = None) -> FastAPI:
    """The service, on the database at ``url`` (``None``: $VECTORPG_URL, else the embedded server)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await vectorpg.aio.connect(url)
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        app.state.db = db
        app.state.docs = await db.collection("fastapi_docs")  # the packaged model
        yield
        await db.close()

    app = FastAPI(title="vectorpg on FastAPI", lifespan=lifespan)

    @app.exception_handler(vectorpg.VectorPgError)
    async def bad_input(request: Request, exc: vectorpg.VectorPgError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": type(exc).__name__, "detail": str(exc)})

    @app.post("/documents")
    async def add_documents(body: NewDocuments, request: Request) -> dict[str, list[str]]:
        ids = await request.app.state.docs.upsert(body.texts, ids=body.ids, metadata=body.metadata)
        return {"ids": ids}

    @app.get("/search")
    async def search(request: Request, q: str, k: int = 5, lang: str | None = None) -> list[dict[str, Any]]:
        hits = await request.app.state.docs.search(q, k=k, where={"lang": lang} if lang else None)
        return [{"id": h.id, "content": h.content, "metadata": h.metadata, "distance": h.distance} for h in hits]

    @app.get("/hybrid")
    async def hybrid(request: Request, q: str, k: int = 5, lang: str | None = None) -> list[dict[str, Any]]:
        hits = await request.app.state.docs.hybrid_search(q, k=k, where={"lang": lang} if lang else None)
        return [{"id": h.id, "content": h.content, "score": h.score.score} for h in hits]

    @app.post("/articles")
    async def add_articles(body: list[NewArticle], request: Request, repo: Articles, s: Session) -> dict[str, int]:
        embedder = request.app.state.docs.embedder
        vectors = await asyncio.to_thread(embedder.embed, [a.title for a in body])
        written = await repo.upsert([{**a.model_dump(), "embedding": v} for a, v in zip(body, vectors)])
        await s.commit()  # the repository joined the request's session: the app commits
        return {"written": written}

    @app.get("/articles/search")
    async def search_articles(repo: Articles, q: str, k: int = 5, lang: str | None = None) -> Any:
        where = Article.lang == lang if lang else None
        pairs = await repo.search(q, k=k, where=where)
        return [{"id": a.id, "title": a.title, "lang": a.lang, "distance": d} for a, d in pairs]

    @app.get("/articles/hybrid")
    async def hybrid_articles(repo: Articles, q: str, k: int = 5) -> Any:
        pairs = await repo.hybrid_search(q, k=k)
        return [{"id": a.id, "title": a.title, "score": score.score} for a, score in pairs]

    return app


app = create_app()


async def demo(service: FastAPI) -> None:
    """Call each endpoint in-process (httpx's ASGI transport; the lifespan run by hand, as a server would)."""
    import httpx

    async with (
        service.router.lifespan_context(service),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=service), base_url="http://demo") as client,
    ):
        texts = ["PostgreSQL keeps vectors next to the rows", "Cats sleep sixteen hours a day", "Les chats dorment"]
        meta = [{"lang": "en"}, {"lang": "en"}, {"lang": "fr"}]
        print(
            (
                await client.post("/documents", json={"texts": texts, "ids": ["pg", "cats", "chats"], "metadata": meta})
            ).json()
        )
        print((await client.get("/search", params={"q": "how long do cats sleep?", "k": 2, "lang": "en"})).json())
        print((await client.get("/hybrid", params={"q": "cats sleep", "k": 2})).json())
        rows = [
            {"id": 1, "title": "Vector search inside PostgreSQL", "lang": "en"},
            {"id": 2, "title": "Chats et chiens", "lang": "fr"},
        ]
        print((await client.post("/articles", json=rows)).json())
        print((await client.get("/articles/search", params={"q": "database vectors", "k": 1, "lang": "en"})).json())
        print((await client.get("/articles/hybrid", params={"q": "chiens"})).json())
        print((await client.get("/search", params={"q": "   "})).json())  # an empty query: 422, the error named


if __name__ == "__main__":
    asyncio.run(demo(app))
