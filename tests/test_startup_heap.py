"""The serving process freezes its startup heap, so full garbage collections stay short.

What freezing buys (shorter pauses, a lower p99) is a time and belongs to the benchmark; these
tests check that both ways of starting a worker freeze, and that they do it before serving.
"""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from gateway import cli
from gateway.app import app_from_environment

UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Start from, and give the rest of the suite back, a heap with nothing frozen."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _tracked(obj: object) -> bool:
    """Is ``obj`` among the objects the cyclic collector walks (not frozen)?"""
    return any(candidate is obj for candidate in gc.get_objects())


def test_a_worker_built_from_the_environment_freezes_the_heap_it_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_UPSTREAM_URL", UNREACHABLE)

    app = app_from_environment()

    assert isinstance(app, FastAPI)
    assert gc.get_freeze_count() > 10_000  # the modules, the schema, the app
    assert not _tracked(app)  # frozen objects are no longer the collector's


def test_serve_freezes_the_heap_after_building_the_app_and_before_serving_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[tuple[Any, int]] = []

    def serve(app: Any, **options: Any) -> None:
        served.append((app, _tracked(app)))

    monkeypatch.setattr(uvicorn, "run", serve)
    monkeypatch.setattr(signal, "signal", lambda *_: None)

    status = cli.main(["serve", "--upstream-url", UNREACHABLE, "--port", "8999"])

    assert status == 0
    [(app, tracked_when_served)] = served
    assert isinstance(app, FastAPI)
    assert not tracked_when_served
