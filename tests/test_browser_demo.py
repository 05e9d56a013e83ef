"""The demo page in real headless Chromium: type a text, click Classify, read the labels off the page.

Needs Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright`` Python package
(its bundled driver only; no browser download: conftest's ``chromium_browser`` points it at Debian's
chromium). Skips, saying why, when either is missing, except on CI (``CI=true``), where it fails
unless ``LABELWISE_SKIP_BROWSER=1``. The screenshot is kept in the test's tmp folder (``--basetemp`` to keep it).
"""
from __future__ import annotations

import httpx
import pytest

from labelwise.compress.export import export_onnx
from labelwise.predict.classifier import Classifier
from labelwise.serve.app import ServerThread, create_app
from labelwise.serve.config import ServeConfig

pytestmark = pytest.mark.browser

TEXT = "婚生子杨某甲由原告抚养，被告每月支付抚养费一千元。"


@pytest.fixture(scope="module")
def server(tiny_zh_checkpoint, tmp_path_factory):
    export = tmp_path_factory.mktemp("browser") / "export"
    export_onnx(tiny_zh_checkpoint, export)
    app = create_app(Classifier.load(export), ServeConfig(max_wait_ms=1))
    with ServerThread(app) as url:
        yield url


def test_demo_page_shows_labels_with_confidence_bars(chromium_browser, server, tmp_path):
    expected = httpx.post(f"{server}/predict", json={"texts": [TEXT], "top_k_min": 1}).json()["predictions"][0]
    page = chromium_browser.new_page(viewport={"width": 900, "height": 760})
    try:
        page.goto(server + "/")
        page.wait_for_function("document.querySelector('#model-info').textContent.includes('20 labels')")
        assert "onnx" in page.inner_text("#model-info")
        page.fill("#text", TEXT)
        page.check("#at-least-one")
        page.click("#classify")
        page.wait_for_selector("#chosen .label-row")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')")
        names = page.locator("#chosen .label-name").all_inner_texts()
        scores = [float(s) for s in page.locator("#chosen .label-score").all_inner_texts()]
        widths = page.eval_on_selector_all("#chosen .fill", "els => els.map(e => e.style.width)")
        others = page.locator("#others .label-name").all_inner_texts()
        page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        # an empty text is refused on the page itself, without a request
        page.fill("#text", "   ")
        page.click("#classify")
        assert "Type or paste a text first" in page.inner_text("#status")
    finally:
        page.close()
    assert names == expected["labels"] and len(names) >= 1
    assert scores == pytest.approx(expected["scores"], abs=6e-4)
    assert widths == [f"{max(1, round(s * 100))}%" for s in expected["scores"]]
    assert len(others) == 5 and not set(others) & set(names)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
