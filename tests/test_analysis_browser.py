"""The HTML report and the word heatmap render in a real browser (headless Chromium through Playwright).

Needs Debian's ``chromium`` and the ``playwright`` package: see conftest's ``chromium_browser``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser  # Chromium: conftest's chromium_browser fixture (fails on CI when missing)


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("requestfailed", lambda request: errors.append(request.url))
    page.goto(path.resolve().as_uri())
    return page, errors


def test_evaluation_report_renders(chromium_browser, tiny_zh_checkpoint, divorce_small, tmp_path):
    from labelwise import Classifier
    from labelwise.evaluation.evaluate import evaluate
    from labelwise.evaluation.report import write_report

    clf = Classifier.load(tiny_zh_checkpoint)
    ev = evaluate(clf, divorce_small)
    page, errors = _open(chromium_browser, write_report(ev, tmp_path / "report.html", classifier=clf))
    assert page.title() == "labelwise evaluation: dev split"
    table = page.inner_text("#per-label")
    assert all(label in table for label in ev.labels)
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.clientWidth])")
    with_gold = sum(1 for label in ev.labels if any(label in e.labels for e in ev.examples))
    assert len(images) == with_gold + 3  # a curve per label with gold examples, the histogram, training curves,
    # the reliability diagram
    assert all(done and natural > 100 and shown > 100 for done, natural, shown in images)
    # each figure fits its grid cell, and the page does not scroll sideways
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    f1_bar = page.eval_on_selector("#per-label tr:nth-child(2) .bar.f", "e => e.getBoundingClientRect().width")
    best_f1 = max(row["f1"] for row in ev.metrics["per_label"])
    cell = page.eval_on_selector("#per-label tr:nth-child(2) .barcell", "e => e.getBoundingClientRect().width")
    assert abs(f1_bar - cell * best_f1 / 100) < 0.1 * cell  # the drawn bar is the number
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000 and not errors


def test_word_heatmap_renders(chromium_browser, tiny_en_checkpoint, tmp_path):
    from labelwise import Classifier
    from labelwise.analysis.interpret_words import InterpretInput, interpret, write_html

    clf = Classifier.load(tiny_en_checkpoint)
    inputs = [InterpretInput("Thank you so much, this made my day!", ["gratitude", "joy"]),
              InterpretInput("I am not sure what you mean.")]
    results = interpret(clf, inputs, "ig", n_steps=4)
    page, errors = _open(chromium_browser, write_html(results, tmp_path / "words.html"))
    table = page.inner_text("#interpretation")
    assert "gratitude" in table and "joy" in table and inputs[1].text.split()[0] in table
    marks = page.eval_on_selector_all(
        "mark", "els => els.map(e => [e.textContent, getComputedStyle(e).backgroundColor])")
    assert [m[0] for m in marks] == [w for r in results for w in r.words]
    darkest = int(results[0].importance.argmax())
    assert marks[darkest][1] == "rgba(220, 38, 38, 0.85)"  # the most important word gets the strongest colour
    shot = tmp_path / "words.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000 and not errors


def test_the_report_shows_the_training_curves(chromium_browser, tiny_zh_checkpoint, divorce_small, tmp_path):
    import json

    from labelwise import Classifier
    from labelwise.evaluation.evaluate import evaluate
    from labelwise.evaluation.report import write_report

    history = json.loads((tiny_zh_checkpoint / "labelwise.json").read_text(encoding="utf-8"))["metrics"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]  # the fixture trains 3 epochs
    clf = Classifier.load(tiny_zh_checkpoint)
    page, errors = _open(chromium_browser, write_report(evaluate(clf, divorce_small), tmp_path / "r.html",
                                                        classifier=clf))
    image = page.locator("#training-curves")
    size = image.evaluate("img => [img.naturalWidth, img.naturalHeight, img.complete]")
    assert size[0] > 300 and size[1] > 150 and size[2]  # a picture the browser decoded
    shot = image.screenshot()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 5000  # drawn on the page, not an empty box
    assert page.locator("#history tr").count() == 1 + len(history) and not errors
