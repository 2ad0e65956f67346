"""The workers' test world, shared: the local stack's stand-ins and moto (``world``), and GitHub's run events
signed and posted through the router onto the github queue (``github``). A module that needs another world (its
own configuration) defines its own ``world``; ``github`` then runs over that one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.workers.github_events import GitHubEvents, github_events
from tests.workers.worker_world import World, running_world


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with running_world(monkeypatch) as world:
        yield world


@pytest.fixture
def github(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubEvents]:
    with github_events(world, monkeypatch) as events:
        yield events
