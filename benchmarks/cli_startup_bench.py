"""Benchmark: startup time of `launchkit --help` / `--version` vs a bare `import typer`.

    python benchmarks/cli_startup_bench.py [--runs 15]

Each command runs ``--runs`` times as a fresh subprocess of the current interpreter (so every
run pays interpreter start-up plus imports, like a user typing the command); the three commands
are interleaved run by run so machine load hits them alike. Prints the median wall time of each,
and ends with ``ratio: X.XX`` = the slower of the two launchkit medians / the ``import typer``
median (issue #17 asks for at most 2.00).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import typer": [sys.executable, "-c", "import typer"],
    "launchkit --version": [sys.executable, "-m", "launchkit", "--version"],
    "launchkit --help": [sys.executable, "-m", "launchkit", "--help"],
}


def time_once(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="Subprocess runs per command.")
    args = parser.parse_args()
    for argv in COMMANDS.values():  # warm the file cache and .pyc files once
        time_once(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            times[name].append(time_once(argv))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:<22} median {value * 1000:7.1f} ms over {args.runs} runs")
    slowest = max(medians["launchkit --version"], medians["launchkit --help"])
    print(f"ratio: {slowest / medians['import typer']:.2f}")


if __name__ == "__main__":
    main()
