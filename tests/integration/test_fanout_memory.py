"""The issuing process's memory does not grow with the size of the county it fans out to."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from tests.integration.conftest import engine_settings
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import TwilioSettings
from warning.directory.importer import import_files
from warning.directory.store import Directory
from warning.model import Level
from warning.sample.generate import write_county
from warning.sandbox.twilio import TwilioSandbox
from warning.store import Store


async def _fan_out_peak(
    store: Store, twilio: TwilioSettings, folder: Path, residents: int
) -> tuple[int, int]:
    files = write_county(folder, residents=residents, seed=5)
    assert (await import_files(Directory(store), files, on_problem=lambda p: None)).errors == 0
    service = Broadcaster(store, engine_settings(store, twilio))
    alert = await service.prepare(
        AlertRequest(
            event="台风", level=Level.RED, areas=("331099",), headline="强台风", instruction="立即转移。"
        )
    )
    tracemalloc.start()
    try:
        report = await service.fan_out(alert)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return sum(report.queued.values()), peak


@pytest.mark.slow
async def test_fan_out_memory_is_flat(
    store: Store, tmp_path: Path, twilio_sandbox: tuple[TwilioSandbox, TwilioSettings]
) -> None:
    """Fanning out to 5x the residents peaks at about the same memory: recipients stream village by village."""
    _, twilio = twilio_sandbox
    small_count, small_peak = await _fan_out_peak(store, twilio, tmp_path / "small", 6_000)
    # The larger county re-imports over the smaller one (same ids update in place) and adds villages.
    large_count, large_peak = await _fan_out_peak(store, twilio, tmp_path / "large", 30_000)
    assert large_count > 4 * small_count > 0
    print(f"fan-out peak: {small_count} deliveries {small_peak} B; {large_count} deliveries {large_peak} B")
    assert large_peak < 2 * small_peak + 2_000_000, (small_peak, large_peak)
