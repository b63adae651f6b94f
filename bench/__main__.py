"""Run one benchmark, or all of them: ``python -m bench [NAME ...] [--quick]``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """The benchmarks there are: every ``bench_NAME`` module, by NAME."""
    modules = pkgutil.iter_modules([str(HERE)])
    return sorted(m.name.removeprefix("bench_") for m in modules if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> None:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    # Not ``choices``: argparse checks an empty ``nargs="*"`` list against them too.
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(names)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that a benchmark works")
    options = parser.parse_args(argv)
    unknown = [name for name in options.names if name not in names]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(names)})")
    for name in options.names or names:
        print(f"\n== {name} ==")
        importlib.import_module(f"bench.bench_{name}").run(quick=options.quick)


if __name__ == "__main__":
    main()
