"""Render the HTML report in real headless Chromium at desktop and phone widths, and print it.

Screenshots land in test-artifacts/ (gitignored) so a person can look at them. Without
Chromium the test is skipped with the reason, except in CI where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from launchkit.analysis import analyze_launch, compare_launches, render_compare, render_report
from tests.analysis_data import build_small_launch

CHROMIUM = os.environ.get("LAUNCHKIT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
]


@pytest.fixture
def chromium(db_url: str) -> str:
    if db_url.startswith("postgresql"):
        pytest.skip("rendering does not depend on the database; Chromium runs on the SQLite half")
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI ({CHROMIUM} not found)")
        pytest.skip(f"Chromium not installed ({CHROMIUM}); report screenshots not checked")
    return path


def run_chromium(binary: str, tmp: Path, page: Path, *args: str) -> None:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    command = [binary, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def screenshot(binary: str, tmp: Path, page: Path, out: Path, width: int, height: int) -> Image:
    out.unlink(missing_ok=True)
    run_chromium(binary, tmp, page, f"--screenshot={out}", f"--window-size={width},{height}")
    assert out.exists() and out.stat().st_size > 30_000, f"{out} is missing or nearly empty"
    image = Image.open(out).convert("RGB")
    assert image.size == (width, height)
    return image


def colours(image: Image, box: tuple[int, int, int, int]) -> int:
    """Distinct colours in a region (a blank or broken page has only a few)."""
    return len(image.crop(box).getcolors(maxcolors=1 << 20) or [])


def test_report_renders_on_desktop_phone_and_paper(session, db_url, chromium, tmp_path) -> None:
    build_small_launch(session)
    session.flush()
    result = analyze_launch(session, "spring")
    kind = db_url.split(":", 1)[0].split("+")[0]
    ARTIFACTS.mkdir(exist_ok=True)
    page = tmp_path / "report.html"
    page.write_text(render_report(result, language="fr", timezone="Europe/Paris"), "utf-8")

    desktop = screenshot(
        chromium, tmp_path, page, ARTIFACTS / f"report-desktop-{kind}.png", 1280, 4200
    )
    assert colours(desktop, (0, 0, 1280, 900)) > 200  # headline cards and first chart
    assert colours(desktop, (0, 1400, 1280, 4200)) > 200  # the lower charts drew
    phone = screenshot(chromium, tmp_path, page, ARTIFACTS / f"report-phone-{kind}.png", 390, 7200)
    # the phone layout has no horizontal page overflow: the right margin stays background
    right_edge = phone.crop((384, 0, 390, 600)).getcolors(maxcolors=4096) or []
    assert len(right_edge) <= 3
    assert colours(phone, (0, 0, 390, 2400)) > 150

    pdf = ARTIFACTS / f"report-print-{kind}.pdf"
    pdf.unlink(missing_ok=True)
    run_chromium(chromium, tmp_path, page, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", data))
    assert 2 <= pages <= 8, f"the printed report has {pages} A4 pages"


def test_compare_page_renders(session, db_url, chromium, tmp_path) -> None:
    build_small_launch(session)
    session.flush()
    kind = db_url.split(":", 1)[0].split("+")[0]
    page = tmp_path / "compare.html"
    page.write_text(render_compare(compare_launches(session), language="en"), "utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    image = screenshot(
        chromium, tmp_path, page, ARTIFACTS / f"compare-desktop-{kind}.png", 1280, 1100
    )
    assert colours(image, (0, 0, 1280, 1100)) > 150
