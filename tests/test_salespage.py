"""The sales page content: pages/<offer>.md around the /buy form, safe Markdown, its image,
the starter files, and a Chromium check at 390 px and 1280 px (screenshots in
test-artifacts/screenshots/salespage-*.png)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launchkit.errors import InputError
from launchkit.resources import starter_dir
from launchkit.salespage import parse_page
from launchkit.web import CSRF_FIELD, create_app
from tests.conftest import free_port
from tests.fixtures.browser import clear_artifacts, screenshot, serve_in_thread
from tests.fixtures.stripe import create_offer


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (1200, 630), (79, 70, 229)).save(out, format="PNG")
    return out.getvalue()


def _write_page(settings: Any, language: str = "fr", image: bool = True) -> Path:
    pages = settings.workspace / "pages"
    pages.mkdir(exist_ok=True)
    text = (starter_dir("templates") / "sales" / f"offer.{language}.md").read_text()
    text = text.replace("couverture.jpg", "cover.png").replace("cover.jpg", "cover.png")
    (pages / "cours.md").write_text(text)
    if image:
        (pages / "cover.png").write_bytes(_png())
    return pages / "cours.md"


@pytest.fixture
def client(settings: Any, sessions: Any, now: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    with sessions.begin() as s:
        create_offer(s, now)
    app = create_app(settings, clock=lambda: now)
    with TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False) as c:
        yield c


def test_page_file_renders_around_the_form(client: Any, settings: Any) -> None:
    bare = client.get("/buy/cours").text
    assert 'class="sp-hero"' not in bare and 'name="plan"' in bare  # no file: the page as before
    _write_page(settings)
    html = client.get("/buy/cours").text
    assert "Lancez votre formation en ligne en 6 semaines" in html
    assert html.count('<details class="sp-item">') == 7  # 4 modules + 3 questions
    assert "Combien de temps faut-il y consacrer" in html
    assert "<blockquote>" in html and 'id="lk-guarantee"' in html
    assert 'src="/buy/cours/image"' in html
    # the form, its CSRF token and the coupon still come after the content
    assert f'name="{CSRF_FIELD}" value="' in html
    assert html.index('class="sp-hero"') < html.index(f'name="{CSRF_FIELD}"')
    assert html.index('id="lk-guarantee"') < html.index('<form method="post"')
    assert 'name="plan"' in html and 'type="submit"' in html
    with_coupon = client.get("/buy/cours?coupon=EARLY").text
    assert 'name="coupon" value="EARLY"' in with_coupon


def test_english_starter_renders(client: Any, settings: Any) -> None:
    _write_page(settings, "en")
    html = client.get("/buy/cours").text
    assert "Launch your online course in 6 weeks" in html
    assert "Frequently asked questions" in html


def test_image_served_from_workspace(client: Any, settings: Any) -> None:
    assert client.get("/buy/cours/image").status_code == 404  # no page file
    _write_page(settings)
    r = client.get("/buy/cours/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (settings.workspace / "pages" / "cover.png").read_bytes()
    (settings.workspace / "pages" / "cover.png").unlink()
    assert client.get("/buy/cours/image").status_code == 404
    assert 'src="/buy/cours/image"' not in client.get("/buy/cours").text  # missing: no <img>
    (settings.workspace / "pages" / "..md").write_text("---\nimage: cover.png\n---\n")
    (settings.workspace / "pages" / "cover.png").write_bytes(_png())
    assert client.get("/buy/./image").status_code == 404
    assert client.get("/buy/%2E/image").status_code == 404


def test_raw_html_in_the_file_is_shown_not_run(client: Any, settings: Any) -> None:
    pages = settings.workspace / "pages"
    pages.mkdir(exist_ok=True)
    (pages / "cours.md").write_text(
        '---\nheadline: "<b>Big</b>"\n---\n<script>alert(1)</script>\n\n'
        "## FAQ\n### <img src=x onerror=alert(1)>?\n[clic](javascript:alert(1))\n"
    )
    html = client.get("/buy/cours").text
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<b>Big</b>" not in html and "&lt;b&gt;Big" in html
    assert "<img src=x" not in html and 'href="javascript:' not in html


def test_broken_page_file_falls_back_to_the_bare_page(client: Any, settings: Any) -> None:
    pages = settings.workspace / "pages"
    pages.mkdir(exist_ok=True)
    (pages / "cours.md").write_text("---\nheadline: [unclosed\n---\n## A\n")
    r = client.get("/buy/cours")
    assert r.status_code == 200 and 'type="submit"' in r.text and 'class="sp-hero"' not in r.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\nheadline: x\n", "not closed"),
        ("---\nheadlin: x\n---\n", "unknown front matter key 'headlin'"),
        ("---\nimage: ../secret.png\n---\n", "must be a .jpg"),
        ("---\nimage: cover.svg\n---\n", "must be a .jpg"),
        ("---\n- a\n---\n", "key: value"),
    ],
)
def test_page_file_mistakes_name_the_file(text: str, message: str) -> None:
    with pytest.raises(InputError, match="pages/cours.md") as e:
        parse_page(text, "pages/cours.md")
    assert message in str(e.value)


def test_init_ships_the_starters_and_a_pages_folder(settings: Any) -> None:
    assert (settings.workspace / "pages").is_dir()
    for language in ("fr", "en"):
        shipped = settings.workspace / "templates" / "sales" / f"offer.{language}.md"
        page = parse_page(shipped.read_text(), shipped.name)
        assert page.headline and page.guarantee and len(page.sections) == 4


def _wait(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.browser
def test_sales_page_layout_in_chromium(chrome: Any, settings: Any, sessions: Any, now: Any) -> None:
    import dataclasses

    from selenium.webdriver.common.by import By

    db = "pg" if settings.database_url.startswith("postgresql") else "sqlite"
    clear_artifacts(f"salespage-{db}")
    with sessions.begin() as s:
        create_offer(s, now)
    _write_page(settings)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(dataclasses.replace(settings, base_url=base), clock=lambda: now)
    with serve_in_thread(app, port):
        for width in (390, 1280):
            chrome.set_window_size(width, 844 if width < 600 else 900)
            chrome.get(f"{base}/buy/cours")
            facts = chrome.execute_script(
                "var b = document.querySelector('#lk-jump').getBoundingClientRect();"
                "var img = document.querySelector('.sp-image');"
                "return {scroll: document.documentElement.scrollWidth,"
                " client: document.documentElement.clientWidth,"
                " jumpBottom: b.bottom, viewport: window.innerHeight,"
                " imgLoaded: img.complete && img.naturalWidth > 0,"
                " imgRight: img.getBoundingClientRect().right};"
            )
            assert facts["scroll"] <= facts["client"], f"horizontal overflow at {width}px"
            assert facts["imgLoaded"] and facts["imgRight"] <= facts["client"]
            assert chrome.find_element(By.ID, "lk-jump").is_displayed()
            assert facts["jumpBottom"] <= facts["viewport"] * 2  # within the first two screens
            questions = chrome.find_elements(By.CSS_SELECTOR, "details.sp-item summary")
            assert any("Combien de temps" in q.text for q in questions)
            answer = questions[-1].find_element(By.XPATH, "following-sibling::div")
            assert not answer.is_displayed()
            chrome.execute_script("arguments[0].scrollIntoView()", questions[-1])
            questions[-1].click()
            assert answer.is_displayed() and "plusieurs mensualités" in answer.text
            chrome.execute_script("window.scrollTo(0, 0)")
            screenshot(chrome, f"salespage-{db}-{width}")
            chrome.find_element(By.ID, "lk-jump").click()
            buy = chrome.find_element(By.CSS_SELECTOR, "#buy button[type=submit]")
            _wait(
                lambda b=buy: chrome.execute_script(
                    "var r = arguments[0].getBoundingClientRect();"
                    "return r.top >= 0 && r.bottom <= window.innerHeight;",
                    b,
                ),
                "the buy button in view after the jump",
            )
            assert buy.is_displayed()


def test_starter_files_are_shipped_in_the_package() -> None:
    assert (starter_dir("templates") / "sales" / "offer.fr.md").is_file()
    assert (starter_dir("templates") / "sales" / "offer.en.md").is_file()
