"""Run one benchmark, or all of them: ``python -m bench [NAME ...]``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))


def main() -> None:
    names = [name.removeprefix("bench_") for name in available()]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=names + [[]], help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that a benchmark works")
    options = parser.parse_args()
    for name in options.names or names:
        print(f"\n== {name} ==")
        importlib.import_module(f"bench.bench_{name}").run(quick=options.quick)


if __name__ == "__main__":
    main()
