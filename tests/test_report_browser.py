"""The HTML report and the compare page in real headless Chromium, at a phone's and a desktop's
width, with layout facts measured in the browser; the report is also printed to PDF.

Screenshots land in test-artifacts/ (gitignored) so a person can look at them. Without
Chromium the tests are skipped with the reason, except in CI where they fail. Rendering does not
depend on the database, so the browser runs on the SQLite half only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from launchkit.analysis import analyze_launch, compare_launches, render_compare, render_report
from launchkit.models import Launch
from tests.analysis_data import OPEN, add_selling, build_small_launch, make_launch
from tests.test_analysis import with_checkout_outcomes
from tests.test_memberships_analysis import club  # noqa: F401 (fixture)

CHROMIUM = os.environ.get("LAUNCHKIT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WIDTHS = {"phone": 390, "desktop": 1280}
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

# Everything the assertions need, measured by the browser in one call.
MEASURE = """
const box = (el) => el.getBoundingClientRect();
const shown = (el) => el.offsetParent !== null && box(el).width > 0;
const charts = [...document.querySelectorAll('.chart svg')].filter(shown).map((svg) => {
  const plot = svg.querySelector('g[id$="axes_1"] > g[id$="patch_2"] path');
  return {id: svg.querySelector('g[id$="figure_1"]').id, width: box(svg).width,
          plot: plot ? box(plot).width : 0};
});
const tables = [...document.querySelectorAll('.scroll')].filter(shown).map((wrap) => {
  const rows = [...wrap.querySelectorAll('tr')];
  const first = () => rows.map((tr) => box(tr.cells[0]));
  const start = {wrap: box(wrap), first: first()};
  wrap.scrollLeft = wrap.scrollWidth;
  const end = {wrap: box(wrap), first: first(),
               last: rows.map((tr) => box(tr.cells[tr.cells.length - 1]))};
  wrap.scrollLeft = 0;
  return {start, end, scrolls: wrap.scrollWidth > wrap.clientWidth,
          header: rows[0].cells[0].textContent};
});
return {innerWidth: window.innerWidth, scrollWidth: document.scrollingElement.scrollWidth,
        charts, tables};
"""


@pytest.fixture
def page_browser(db_url: str, chrome: Any) -> Any:
    """Selenium Chromium (tests/fixtures/browser.py), on the SQLite half only."""
    if db_url.startswith("postgresql"):
        pytest.skip("rendering does not depend on the database; Chromium runs on the SQLite half")
    return chrome


def show(driver: Any, page: Path, width: int) -> dict[str, Any]:
    """Open ``page`` in a ``width``-px viewport (a phone's when narrow) and measure it."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    driver.get(page.as_uri())
    return driver.execute_script(MEASURE)


def save_screenshot(driver: Any, width: int, name: str) -> Path:
    """The whole page as test-artifacts/NAME.png."""
    height = int(driver.execute_script("return document.scrollingElement.scrollHeight"))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": min(height, 12000),
            "deviceScaleFactor": 1,
            "mobile": width < 600,
        },
    )
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 20_000, f"{path} is nearly empty"
    return path


def assert_fits(facts: dict[str, Any], width: int) -> None:
    """No sideways page scroll; tables scroll inside their wrapper with the first column kept."""
    assert facts["innerWidth"] == width
    assert facts["scrollWidth"] <= facts["innerWidth"], "the page scrolls sideways"
    for table in facts["tables"]:
        for moment in ("start", "end"):
            wrap, cells = table[moment]["wrap"], table[moment]["first"]
            assert 0 <= wrap["left"] and wrap["right"] <= width, table["header"]
            for cell in cells:  # the first column is in view before and after scrolling
                assert wrap["left"] - 1 <= cell["left"] and cell["right"] <= wrap["right"] + 1
                assert cell["width"] >= 60, f"first column of {table['header']!r} squeezed"
        for cell in table["end"]["last"]:  # scrolled to the end, the last column shows whole
            assert cell["right"] <= table["end"]["wrap"]["right"] + 1, table["header"]


def test_report_on_a_phone_and_a_desktop(session, page_browser, tmp_path) -> None:
    with_checkout_outcomes(session)
    add_selling(session, session.scalar(sa.select(Launch.id).where(Launch.slug == "spring")))
    result = analyze_launch(session, "spring", now=OPEN + timedelta(days=2))
    assert result["provisional"] is True
    page = tmp_path / "report.html"
    page.write_text(render_report(result, language="fr", timezone="Europe/Paris"), "utf-8")

    for name, width in WIDTHS.items():
        facts = show(page_browser, page, width)
        save_screenshot(page_browser, width, f"report-{name}")
        assert_fits(facts, width)
        charts = {chart["id"].split("-")[0]: chart for chart in facts["charts"]}
        assert set(charts) == {"conversion", "waterfall", "sales", "refunds", "plans"}
        for chart in charts.values():  # every chart spans the column and its plot is readable
            assert chart["width"] >= 300, chart
            assert chart["plot"] >= 0.5 * chart["width"], chart
        tables = {table["header"] for table in facts["tables"]}
        assert {"Source", "Tag", "E-mail", "Palier", "Code"} <= tables  # selling tables fit too
        body = page_browser.find_element("tag name", "body").text
        banner = page_browser.find_element("id", "provisional")
        assert banner.is_displayed() and banner.text.startswith("Provisoire")
        assert "95 fois sur 100" in body
        assert "Relance des paniers abandonnés" in body and "TVA conservée" in body
        assert "à la demande du client" in body and "requested_by_customer" not in body
        assert "Cours photo est ouvert" in body and "{{" not in body
        tag_rows = page_browser.execute_script(
            "return [...document.querySelectorAll('table')].filter("
            "t => t.rows[0].cells[0].textContent === 'Tag')[0].innerText"
        )
        assert "vip" in tag_rows and "buyer" not in tag_rows and "refunded" not in tag_rows


def test_compare_page_on_a_phone_and_a_desktop(session, page_browser, tmp_path) -> None:
    build_small_launch(session)
    make_launch(session, "automne-avec-un-nom-long", cart_open=OPEN - timedelta(days=90))
    session.flush()
    page = tmp_path / "compare.html"
    page.write_text(render_compare(compare_launches(session), language="fr"), "utf-8")
    for name, width in WIDTHS.items():
        facts = show(page_browser, page, width)
        save_screenshot(page_browser, width, f"compare-{name}")
        assert_fits(facts, width)
        assert [chart["width"] >= 300 for chart in facts["charts"]] == [True]
        (table,) = facts["tables"]
        assert table["header"] == "Lancement"
        if name == "desktop":  # the whole table shows without scrolling on a desktop
            assert not table["scrolls"]


@pytest.fixture
def chromium(db_url: str) -> str:
    if db_url.startswith("postgresql"):
        pytest.skip("rendering does not depend on the database; Chromium runs on the SQLite half")
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI ({CHROMIUM} not found)")
        pytest.skip(f"Chromium not installed ({CHROMIUM}); report not printed")
    return path


def test_report_prints_on_a4(session, chromium, tmp_path) -> None:
    build_small_launch(session)
    session.flush()
    page = tmp_path / "report.html"
    page.write_text(render_report(analyze_launch(session, "spring"), language="fr"), "utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    pdf = ARTIFACTS / "report-print.pdf"
    pdf.unlink(missing_ok=True)
    command = [
        chromium,
        *FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--print-to-pdf={pdf}",
        "--no-pdf-header-footer",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", data))
    assert 2 <= pages <= 8, f"the printed report has {pages} A4 pages"


def test_click_funnel_table_on_a_phone_and_a_desktop(session, page_browser, tmp_path) -> None:
    from tests.test_click_funnel import generate_launch

    generate_launch(session, seed=1)
    session.flush()
    result = analyze_launch(session, "spring")
    page = tmp_path / "report.html"
    page.write_text(render_report(result, language="fr", timezone="Europe/Paris"), "utf-8")
    for name, width in WIDTHS.items():
        facts = show(page_browser, page, width)
        assert_fits(facts, width)
        table = page_browser.find_element("id", "click-funnel")
        section = table.find_element("xpath", "./ancestor::section")
        page_browser.execute_script("arguments[0].scrollIntoView()", section)
        ARTIFACTS.mkdir(exist_ok=True)
        section.screenshot(str(ARTIFACTS / f"report-funnel-{name}.png"))
        rows = page_browser.execute_script(
            "return [...arguments[0].rows].map(r => [...r.cells].map(c => c.innerText))", table
        )
        assert rows[0][:3] == ["E-mail", "Délivrés", "Ont cliqué"]
        assert len(rows) == 1 + len(result["click_funnel"])
        for cells, row in zip(rows[1:], result["click_funnel"], strict=True):
            assert cells[1] == str(row["delivered"])
            assert cells[2].split()[0] == str(row["clicked"])
            assert cells[6].split()[0] == str(row["bought"])
        body = page_browser.find_element("tag name", "body").text
        assert "Entonnoir des clics par e-mail" in body


def test_membership_report_opens_with_memberships_on_a_phone_and_a_desktop(
    club,  # noqa: F811 (the fixture imported above)
    now,
    page_browser,
    tmp_path,
) -> None:
    """A launch that sold only memberships: the membership section (figures, retention chart,
    cohort table) comes right after the headline, above the one-off cards, and fits both
    widths."""
    at = now.replace(year=2027, month=3, day=1)
    with club.begin() as s:
        result = analyze_launch(s, "club", now=at)
    page = tmp_path / "report.html"
    page.write_text(render_report(result, language="fr", timezone="Europe/Paris"), "utf-8")
    for name, width in WIDTHS.items():
        facts = show(page_browser, page, width)
        save_screenshot(page_browser, width, f"report-membership-{name}")
        assert_fits(facts, width)
        tops = page_browser.execute_script(
            "const top = (q) => document.querySelector(q).getBoundingClientRect().top;"
            "return [top('header'), top('#membership'), top('.cards')];"
        )
        header, membership, cards = tops
        assert header < membership < cards
        charts = {chart["id"].split("-")[0] for chart in facts["charts"]}
        assert "retention" in charts
        assert {"Cohorte", "Source"} <= {table["header"] for table in facts["tables"]}
