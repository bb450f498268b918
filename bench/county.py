"""A synthetic county for the benchmarks: generated (`warning sample generate`) and imported once."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from warning.directory.importer import import_files
from warning.directory.store import Directory
from warning.progress import ProgressBar
from warning.sample.generate import write_county
from warning.store import Store

SEED = 7


async def import_county(store: Store, residents: int, *, label: str) -> float:
    """Generate a county of `residents` people and import it into the store; return the seconds taken.

    Raises:
        RuntimeError: the import reported errors (the generator and importer disagree: a bug).
    """
    start = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="wbench-county-"))
    try:
        bar = ProgressBar(f"{label}: generate {residents:,} residents")
        paths = write_county(out, residents=residents, seed=SEED, progress=bar.update)
        bar.close()
        bars: dict[str, ProgressBar] = {}

        def progress(source: str, done: int, total: int | None) -> None:
            if source not in bars:
                for previous in bars.values():
                    previous.close()
                bars[source] = ProgressBar(f"{label}: import {Path(source).name}", unit="B")
            bars[source].update(done, total)

        problems: list[str] = []
        report = await import_files(
            Directory(store), paths, on_problem=lambda p: problems.append(str(p)), progress=progress
        )
        for bar in bars.values():
            bar.close()
        if report.errors:
            raise RuntimeError(f"the synthetic county imported with {report.errors} errors: {problems[:3]}")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return time.perf_counter() - start
