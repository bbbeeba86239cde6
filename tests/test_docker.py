"""The testcontainers path: a pgvector/pgvector container, only where a Docker engine answers.

This is the one test in the suite that may skip: these machines have a docker client but no engine.
"""

from __future__ import annotations

import pytest

import vectorpg
from tests.fix_db import docker_engine_answers


@pytest.mark.docker
@pytest.mark.skipif(not docker_engine_answers(), reason="no Docker engine answers (testcontainers path)")
def test_pgvector_container() -> None:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("pgvector/pgvector:pg18", driver=None) as container:
        db = vectorpg.connect(container.get_connection_url())
        docs = db.collection("in_docker", dimension=2)
        docs.add(vectors=[[1, 0], [0, 1]], ids=["a", "b"])
        assert docs.search([1, 0], k=1)[0].id == "a"
        db.close()
