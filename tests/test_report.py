"""The HTML evaluation report: its numbers, its swap matrix, escaping, and `labelwise evaluate --report`."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np

from labelwise.cli.main import main
from labelwise.data.dataset import Example, read_labels
from labelwise.evaluation.evaluate import Evaluation
from labelwise.evaluation.metrics import evaluate_predictions
from labelwise.evaluation.report import build_report, swap_matrix, write_report


class _Tables(HTMLParser):
    """Rows of every <table id=...> as lists of cell texts, and the <img> sources."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self._table, self._row, self._cell = {}, [], None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "id" in attrs:
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _Tables:
    parser = _Tables()
    parser.feed(page)
    return parser


def _toy_evaluation() -> Evaluation:
    labels = ["a", "b", "c"]
    examples = [Example("one <script>alert(1)</script>", ("a",), 1), Example("two", ("a",), 2),
                Example("three", ("b",), 3), Example("four", ("a", "c"), 4), Example("five", (), 5)]
    probs = np.array([[0.2, 0.9, 0.1],   # a missed, b wrongly predicted
                      [0.3, 0.8, 0.1],   # a missed, b wrongly predicted
                      [0.1, 0.7, 0.2],   # right
                      [0.9, 0.1, 0.2],   # c missed, nothing wrong predicted
                      [0.1, 0.2, 0.1]], dtype=np.float32)
    thresholds = np.full(3, 0.5, dtype=np.float32)
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    metrics = evaluate_predictions(y, probs, labels, thresholds)
    metrics.update(split="dev", thresholds="0.5", zero_division="zero-division note")
    return Evaluation("dev", metrics, probs, examples, thresholds, labels)


def test_swap_matrix_counts_missed_gold_against_wrong_predictions():
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 1]])
    pred = np.array([[0, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 0]])
    m = swap_matrix(y, pred)
    assert m.shape == (3, 4)
    assert m[0].tolist() == [0, 2, 1, 0]  # gold a missed twice: b predicted both times, c once
    assert m[2].tolist() == [0, 0, 0, 1]  # gold c missed once with no wrong label predicted
    assert m[1].sum() == 0  # b is never missed


def test_report_holds_the_numbers_swaps_curves_and_escaped_bad_cases():
    ev = _toy_evaluation()
    page = build_report(ev)
    parsed = _parse(page)
    overall = dict(row for row in parsed.tables["overall"] if len(row) == 2)
    assert overall["Examples"] == "5"
    assert overall["Micro precision / recall / F1"] == "{precision:.2f} / {recall:.2f} / {f1:.2f}".format(
        **ev.metrics["micro"])
    per_label = parsed.tables["per-label"][1:]
    assert [row[0] for row in per_label] == ["a", "b", "c"]  # by F1 (a = b = 50, c = 0), ties by support
    assert per_label[0][1:6] == ["3 (60.0%)", "1", "100.0", "33.3", "50.0"]
    assert per_label[1][1:6] == ["1 (20.0%)", "3", "33.3", "100.0", "50.0"]
    top = parsed.tables["top-swaps"][1:]
    assert top == [["a", "b", "2"]]
    swaps = {row[0]: row[1:] for row in parsed.tables["swaps"][1:]}
    assert set(swaps) == {"a", "c"} and swaps["c"][-1] == "1"  # c missed with nothing wrong instead
    # one PR curve per label with gold examples + the histogram; all embedded, nothing fetched
    assert len(parsed.images) == 4 and all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert "threshold 0.50" in page and not re.search(r"(src|href)=['\"]https?:", page)
    counts = {row[0]: row[1:] for row in parsed.tables["label-counts"][1:]}
    assert counts["1"] == ["3", "4"] and counts["2"] == ["1", "0"] and counts["0"] == ["1", "1"]
    cases = parsed.tables["bad-cases"][1:]
    assert [row[0] for row in cases] == ["1", "2", "4"]  # file lines of the wrong examples
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_makes_the_evaluations_top_k_decisions():
    """With top_k_min=1 the report shows what bad_case.txt and `predict --top_k_min 1` give: "five" (gold: no
    label, nothing at 0.5) gets its most probable label b and becomes a bad case; "three" keeps b alone."""
    from dataclasses import replace

    ev = replace(_toy_evaluation(), top_k_min=1)
    cases = {row[0]: row for row in _parse(build_report(ev)).tables["bad-cases"][1:]}
    assert list(cases) == ["1", "2", "4", "5"]
    assert cases["5"][3] == "b 0.20"
    assert ev.predicted_labels()[4] == ["b"] and ev.predicted_labels()[2] == ["b"]


def test_evaluate_report_cli_chinese(tiny_zh_checkpoint, divorce_small, tmp_path, capsys):
    report, bad = tmp_path / "out" / "report.html", tmp_path / "bad_case.txt"
    code = main(["-q", "evaluate", "--dataset_dir", str(divorce_small), "--params_path", str(tiny_zh_checkpoint),
                 "--bad_case_file", str(bad), "--report", str(report)])
    assert code == 0 and "HTML report written" in capsys.readouterr().out
    page = report.read_text(encoding="utf-8")
    parsed = _parse(page)
    labels = read_labels(divorce_small / "label.txt")
    assert sorted(row[0] for row in parsed.tables["per-label"][1:]) == sorted(labels)
    assert dict(r for r in parsed.tables["overall"] if len(r) == 2)["Examples"] == "80"
    n_bad = len(bad.read_text(encoding="utf-8").splitlines()) - 1
    assert len(parsed.tables["bad-cases"]) - 1 == min(n_bad, 300)
    assert "婚后有子女" in page and page.count("<img") >= 2
    history = json.loads((tiny_zh_checkpoint / "labelwise.json").read_text(encoding="utf-8"))["metrics"]["history"]
    rows = parsed.tables["history"][1:]  # the training curves' numbers, from the checkpoint's history
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert [float(row[3]) for row in rows] == [round(h["dev_macro_f1"], 2) for h in history]
    assert "alt='training curves'" in page


def test_report_english_and_capped_bad_cases(tiny_en_checkpoint, goemotions_small, tmp_path):
    from labelwise import Classifier
    from labelwise.evaluation.evaluate import evaluate

    clf = Classifier.load(tiny_en_checkpoint)
    ev = evaluate(clf, goemotions_small, "test")
    path = write_report(ev, tmp_path / "en.html", classifier=clf, max_bad_cases=5)
    page = path.read_text(encoding="utf-8")
    parsed = _parse(page)
    assert len(parsed.tables["bad-cases"]) - 1 == 5 and "the first 5 are shown" in page
    assert "admiration" in page and "test split" in page and "torch backend" in page
