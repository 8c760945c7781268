"""The demo page in a real browser: headless Chromium (Debian's package) driven by Playwright against
`lfm-colbert serve` on a free loopback port. A Japanese query finds what the library finds, with
the matched words highlighted; a filter narrows the results; Arabic reads right to left.

CI installs chromium and fonts-noto-cjk (.ci/run), so there this test never skips."""

from __future__ import annotations

import os
import shutil

import pytest
from serve_helpers import corpus_index, index_copy  # noqa: F401
from test_serve_process import start_server

from lfm_colbert.index import Index

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUERY = "ペンギンはどうやって泳ぐの？"  # Japanese; filtered to German documents below


def _missing(what: str) -> None:
    """Skip on a developer's machine; fail in CI, which installs everything this test needs."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; .ci/run installs chromium and fonts-noto-cjk with apt, playwright with [dev]")
    pytest.skip(f"needs {what} (apt-get install chromium fonts-noto-cjk; pip install playwright); CI always runs it")


def _chromium() -> str:
    path = os.environ.get("LFM_COLBERT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        _missing("Debian's chromium")
    return path


def _filter_to(page, lang: str) -> None:
    page.select_option("#filter-key", "lang")
    page.fill("#filter-value", lang)
    page.click("#add-filter")


def _until(page, check, what: str, timeout_s: float = 30.0) -> None:
    """Poll from Python: the page's Content-Security-Policy (no eval) forbids wait_for_function."""
    for _ in range(int(timeout_s * 20)):
        if check():
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_for(page, ids: list[str]) -> None:
    _until(page, lambda: _ids(page) == ids and page.get_attribute("#results", "aria-busy") is None, f"results {ids}")


def _ids(page) -> list[str]:
    return page.eval_on_selector_all("li.hit", "els => els.map(e => e.dataset.id)")


def test_demo_page_in_chromium(index_copy, tmp_path):
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package")
    reference = Index(index_copy, create=False)
    want = [h.id for h in reference.search(QUERY, k=10)]
    want_de = [h.id for h in reference.search(QUERY, k=10, filter={"lang": "de"})]
    want_ar = [h.id for h in reference.search(QUERY, k=10, filter={"lang": "ar"})]
    # A query whose hybrid ranking differs from its semantic one, so the page's mode switch shows.
    fused = [(q, [h.id for h in reference.search(q, k=10)], [h.id for h in reference.search(q, k=10, mode="hybrid")])
             for q in ("Emperor penguins winter", "espresso coffee", "volcano eruption ash")]
    hybrid_query, want_semantic, want_hybrid = next(f for f in fused if f[1] != f[2])
    reference.close()

    proc, url = start_server(index_copy)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            failed = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(url + "/")
            _until(page, lambda: page.locator("#filter-key option").count() > 0, "the metadata keys")

            page.fill("#q", QUERY)
            assert page.inner_text("#q-lang") == "Japanese"
            page.press("#q", "Enter")
            page.wait_for_selector("li.hit")
            assert _ids(page) == want  # what the library ranks, in that order
            first = page.locator("li.hit").first
            marks = first.locator("p.text mark")
            assert marks.count() >= 1  # the matched words are highlighted
            text = first.locator("p.text").inner_text()
            assert all(m in text for m in marks.all_inner_texts())
            assert "10 results for" in page.inner_text("#status")

            _filter_to(page, "de")
            _wait_for(page, want_de)
            assert page.inner_text("#active-filters li").startswith("lang = de")
            assert all(c.endswith("de") for c in page.locator("li.hit .chip[data-key=lang]").all_inner_texts())
            assert page.locator("li.hit p.text mark").count() >= len(want_de)
            page.locator("li.hit details summary").first.click()  # the per-token table
            assert page.locator("li.hit table.matches tr").count() > 2
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            if os.environ.get("LFM_COLBERT_SCREENSHOT"):  # how docs/serve-demo.png is made
                page.screenshot(path=os.environ["LFM_COLBERT_SCREENSHOT"])

            page.click("#active-filters li button")  # remove the filter
            _wait_for(page, want)
            chip = page.locator("li.hit").first.locator(".chip[data-key=topic]")
            topic = chip.inner_text().split(": ")[1]
            chip.click()  # a result's metadata is a filter too
            _until(page, lambda: set(page.locator("li.hit .chip[data-key=topic]").all_inner_texts()) == {f"topic: {topic}"},
                   f"topic {topic} only")
            page.click("#active-filters li button")
            _wait_for(page, want)

            _filter_to(page, "ar")
            _wait_for(page, want_ar)
            assert page.eval_on_selector("li.hit p.text", "p => p.matches(':dir(rtl)')")  # right to left
            assert page.eval_on_selector("li.hit p.text", "p => p.lang") == "ar"
            page.click("#active-filters li button")
            _wait_for(page, want)
            page.fill("#q", hybrid_query)
            page.press("#q", "Enter")
            _wait_for(page, want_semantic)
            page.select_option("#mode", "hybrid")  # MaxSim and BM25 fused, as the library fuses them
            _wait_for(page, want_hybrid)
            assert not failed, failed
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    png = (tmp_path / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
