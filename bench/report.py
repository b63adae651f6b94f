"""Print a benchmark's rows as a table and keep them as JSON."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def report(
    name: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, notes: dict[str, Any] | None = None
) -> Path:
    """Print ``rows`` under ``headers`` and write them, with the machine, to ``results/NAME.json``."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        aligned = (c.rjust(w) if index and _numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True))
        print("  ".join(aligned).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "notes": notes or {},
        "rows": [dict(zip(headers, row, strict=True)) for row in rows],
    }, indent=2, default=str))
    print(f"\nwritten to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _numeric(cell: str) -> bool:
    return cell.replace(",", "").replace(".", "", 1).replace("-", "", 1).replace("x", "").isdigit()
