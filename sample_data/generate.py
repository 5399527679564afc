#!/usr/bin/env python3
"""Generate launchkit's sample data (fictional people, fixed seed, stdlib only).

    python3 sample_data/generate.py                 # writes next to this file
    python3 sample_data/generate.py --out /tmp/sd   # writes elsewhere
    python3 sample_data/generate.py --audience 2000 # smaller audience

The output is byte-for-byte reproducible: one ``random.Random(2026)``, fixed
dates in 2025-2026, nothing read from the clock, the network or the locale.
After writing, the generator reads every CSV back with the ``csv`` module and
checks the documented counts (invalid rows, duplicates, overlaps); it exits
non-zero if any check fails.  README.md and expected.json are written from the
real numbers.

The code lives next to this script in ``generator/``, one module per thing generated:
``config`` (seed, calendar, counts), ``names`` and ``vocab`` (pools), ``people`` (names,
emails, times), ``rows`` (CSV rows per format), ``pdf`` and ``magnets`` (lead magnets),
``build`` (the lists and their overlaps), ``checks`` (read-back) and ``readme``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.dont_write_bytecode = True  # this folder may be inside an installed package

from generator.build import generate  # noqa: E402
from generator.checks import check  # noqa: E402
from generator.config import N_EMPTY, SEED  # noqa: E402
from generator.readme import write_readme  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        default=os.path.dirname(os.path.abspath(__file__)),
        help="output directory (default: this script's folder)",
    )
    ap.add_argument(
        "--audience",
        type=int,
        default=5000,
        help="people across both Mailchimp files (default 5000)",
    )
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    info = generate(args.out, args.audience)
    counts = check(args.out, info)
    expected = {
        "seed": SEED,
        "audience": args.audience,
        "counts": counts,
        "invalid_emails": info["invalid"],
        "empty_email_rows": N_EMPTY,
        "duplicates": info["duplicates"],
        "unsubscribed_also_in_subscribed": info["unsub_overlap"],
        "kit_overlap": info["kit"],
        "generic_overlap_subscribed": info["generic_overlap"],
    }
    with open(os.path.join(args.out, "expected.json"), "wb") as fh:
        fh.write((json.dumps(expected, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    write_readme(args.out, info, counts)
    for k, v in counts.items():
        if not isinstance(v, dict):
            print(f"{k:42s} {v}")
    for k in ("by_source", "kit_status"):
        print(f"{k:42s} {json.dumps(counts[k])}")
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
