"""sample_data/generate.py (split into sample_data/generator/) rebuilds the shipped files byte
for byte, with the Python running the tests and no third-party module."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from launchkit.resources import starter_dir

SAMPLE = starter_dir("sample_data")
GENERATED = (
    "audience_mailchimp.csv", "audience_mailchimp_unsubscribed.csv", "kit_subscribers.csv",
    "generic_contacts.csv", "generic_contacts_latin1.csv", "expected.json", "README.md",
    "magnets/checklist-lancement.pdf", "magnets/guide-tarifs.pdf", "magnets/mini-cours-email.md",
)  # fmt: skip


def test_generator_rebuilds_the_shipped_sample_data(tmp_path: Path) -> None:
    out = tmp_path / "sd"
    done = subprocess.run(
        [sys.executable, "-S", str(SAMPLE / "generate.py"), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "all checks passed" in done.stdout
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == sorted(GENERATED)
    for name in GENERATED:
        assert filecmp.cmp(out / name, SAMPLE / name, shallow=False), name
    assert not list(SAMPLE.rglob("__pycache__"))  # nothing written into the shipped folder
