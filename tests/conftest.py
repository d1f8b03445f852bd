from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailserver.app import App
from policy.loader import load
from tests.helpers import cli, write_config


class Clock:
    """A settable clock for simulated-time tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def initialised(config_file: Path) -> Path:
    cli(config_file, "init", check=True)
    return config_file


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 28, 3, 0, tzinfo=UTC))


@pytest.fixture
async def app(config_file: Path, clock: Clock) -> AsyncIterator[App]:
    a = await App.open(loaded=load(config_file), clock=clock)
    await a.directory.ensure_operator_unit("Sở Thông tin và Truyền thông", None, actor="test")
    yield a
    await a.close()
