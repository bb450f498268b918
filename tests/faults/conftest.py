"""Fixtures of the fault suite: a rig of the test's own servers, sized by WARNING_FAULTS.

`make test` runs the fast subset (2,000 deliveries, shortened faults); `make test-faults`
(WARNING_FAULTS=full) runs every scenario on 10,000 deliveries with the real fault durations.
Scenarios marked `faults_full` run only in the full suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.harness import FULL, Rig, Scale, build_rig


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    skip = pytest.mark.skip(reason="full fault suite only: make test-faults (WARNING_FAULTS=full)")
    for item in items:
        if item.get_closest_marker("faults_full") is not None:
            item.add_marker(skip)


@pytest.fixture
def scale() -> Scale:
    return Scale.current()


@pytest.fixture
async def rig(tmp_path: Path, scale: Scale) -> AsyncIterator[Rig]:
    """A Redis, a Twilio sandbox and a county of this test's own; workers are started by the test."""
    async with build_rig(tmp_path, scale) as built:
        yield built
