"""Label trees (体育##足球): label.txt checked as a tree, ancestors completed, the consistent decision rule,
per-level metrics, and predict / evaluate / the service / the report on a tiny tree dataset."""
from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest

from conftest import REPO, _train_tiny, make_subset, untrained_checkpoint
from labelwise.cli.main import main
from labelwise.data.dataset import load_dataset, multi_hot
from labelwise.data.hierarchy import Hierarchy
from labelwise.errors import DataError, LabelwiseError
from labelwise.evaluation.decision import decide, decision_matrix, inconsistent_count, shown_matrix
from labelwise.evaluation.evaluate import evaluate, format_report, write_bad_cases
from labelwise.evaluation.levels import level_metrics
from labelwise.evaluation.metrics import evaluate_predictions
from labelwise.model.checkpoint import CheckpointMeta, read_meta
from labelwise.predict.classifier import Classifier
from labelwise.predict.output import predict_file

TREE = ["体育", "体育##足球", "体育##篮球", "财经", "财经##股票", "财经##股票##港股"]


def write_dataset(folder, labels, train_lines, dev_lines=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (folder / "train.txt").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    (folder / "dev.txt").write_text("\n".join(dev_lines or train_lines) + "\n", encoding="utf-8")
    return folder


def is_closed(labels, names) -> bool:
    """Every label's parent is among ``names``."""
    tree = Hierarchy.from_labels(labels)
    return all(tree.parents[tree.index(n)] < 0 or labels[tree.parents[tree.index(n)]] in names for n in names)


# ---- label.txt as a tree ------------------------------------------------------------------------------------
def test_a_tree_has_parents_levels_and_ancestors():
    tree = Hierarchy.from_labels(TREE)
    assert tree.parents == (-1, 0, 0, -1, 3, 4) and not tree.is_flat and tree.depth == 3
    assert tree.levels == [[0, 3], [1, 2, 4], [5]]
    assert tree.ancestors(5) == [4, 3] and tree.path(5) == [3, 4, 5] and tree.ancestors(0) == []
    assert [tree.level(i) for i in range(6)] == [1, 2, 2, 1, 2, 3] and tree.name(5) == "港股"
    assert tree.order() == [0, 1, 2, 3, 4, 5]
    assert Hierarchy.from_labels(["财经##股票", "体育##足球", "财经", "体育"]).order() == [2, 0, 3, 1]


def test_flat_labels_stay_flat():
    for labels, sep in ((["a", "b/c", "d"], "##"), (["体育##足球", "x"], "none"), (["a##b"], None)):
        tree = Hierarchy.from_labels(labels, sep)
        assert tree.is_flat and tree.parents == (-1,) * len(labels) and tree.depth == 1
        assert tree.complete(labels[:1]) == (tuple(labels[:1]), 0)
    assert not Hierarchy.from_labels(["a", "a/b"], "/").is_flat


def test_flat_labels_that_read_like_paths_get_a_hint(caplog):
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        assert Hierarchy.from_labels(["体育", "体育/足球"]).is_flat
    assert "--hierarchy_sep /" in caplog.text


@pytest.mark.parametrize("labels, line, words", [
    (["体育", "财经##股票"], 2, ["parent '财经' of '财经##股票' is not in label.txt", "--hierarchy_sep none"]),
    (["a", "a##b", "a##b##c##d"], 3, ["parent 'a##b##c'"]),
    (["a", "a####b"], 2, ["empty path element"]),
    (["a", "a##"], 2, ["empty path element"]),
    (["a", "##a"], 2, ["empty path element"]),
    (["a", "a###b"], 2, ["'###' where the separator is '##'"]),
    (["a", "a ## b"], 2, ["spaces around '##'", "write a##b"]),
    (["a", "a##b", "a##b##a"], 3, ["names 'a' twice along one path (a cycle)"]),
    (["体育", "体育##足球", "财经", "财经/股票"], 4, ["mixes separators: '/' under '财经'", "write '财经##股票'"]),
    (["a", "a##b", "a##b>c"], 3, ["mixes separators: '>' under 'a##b'"]),
    (["体育", "体育#足球", "体育##篮球"], 2, ["mixes separators: '#' under '体育'"]),
])
def test_a_bad_tree_is_one_line_naming_file_and_line(tmp_path, labels, line, words):
    folder = write_dataset(tmp_path / "d", labels, ["text\t" + labels[0]])
    with pytest.raises(DataError) as err:
        load_dataset(folder)
    message = str(err.value)
    assert message.startswith(f"{folder / 'label.txt'}:{line}: ") and "\n" not in message
    for word in words:
        assert word in message


def test_a_group_may_hold_its_namesake_and_slashes_in_names_are_fine(tmp_path):
    tree = Hierarchy.from_labels(["joy", "joy##joy", "joy##love", "文化/艺术", "文化/艺术##电影"])
    assert tree.parents == (-1, 0, 0, -1, 3)
    with pytest.raises(LabelwiseError, match="label 3: label 'a##a##a' names 'a' twice"):
        Hierarchy.from_labels(["a", "a##a", "a##a##a"])


def test_a_bad_tree_on_the_command_line_is_one_line(tmp_path, capsys):
    folder = write_dataset(tmp_path / "d", ["体育", "体育##足球##英超"], ["text\t体育"])
    assert main(["-q", "train", "--dataset_dir", str(folder), "--save_dir", str(tmp_path / "ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"{folder / 'label.txt'}:2: the parent '体育##足球' of '体育##足球##英超' is not in label.txt" in err


# ---- the data files: ancestors completed ----------------------------------------------------------------------
def test_missing_ancestors_are_added_counted_and_reported_once(tmp_path, caplog):
    folder = write_dataset(tmp_path / "d", TREE, ["t1\t体育##足球", "t2\t财经##股票##港股,体育", "t3\t", "t4\t体育"],
                           ["d1\t财经##股票"])
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        ds = load_dataset(folder)
    assert [e.labels for e in ds.train] == [("体育", "体育##足球"), ("财经", "财经##股票", "财经##股票##港股", "体育"),
                                            (), ("体育",)]
    assert ds.dev[0].labels == ("财经", "财经##股票") and ds.train[1].line == 2
    assert ds.added_parents == 4 and ds.hierarchy.depth == 3
    warnings = [r.getMessage() for r in caplog.records if "missing parent" in r.getMessage()]
    assert len(warnings) == 1
    assert "added 4 missing parent labels (a line listing only `体育##足球` now also has `体育`)" in warnings[0]


def test_flat_data_is_read_as_before(tmp_path, caplog):
    folder = write_dataset(tmp_path / "d", ["a", "b", "c/d"], ["t1\ta,c/d", "t2\t"])
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        ds = load_dataset(folder)
    assert [e.labels for e in ds.train] == [("a", "c/d"), ()] and ds.added_parents == 0 and ds.hierarchy.is_flat
    assert not caplog.records


def test_another_separator_in_the_data_gets_the_label_txt_spelling(tmp_path):
    folder = write_dataset(tmp_path / "d", TREE, ["t1\t体育/足球"])
    with pytest.raises(DataError, match=r"train.txt:1: label '体育/足球' is not in label.txt, which has '体育##足球'"):
        load_dataset(folder)


def test_a_configured_separator_reads_its_paths(tmp_path):
    folder = write_dataset(tmp_path / "d", ["a", "a/b", "c##d"], ["t1\ta/b"])
    ds = load_dataset(folder, hierarchy_sep="/")
    assert ds.train[0].labels == ("a", "a/b") and ds.hierarchy.parents == (-1, 0, -1)
    flat = load_dataset(write_dataset(tmp_path / "e", ["x##y"], ["t\tx##y"]), hierarchy_sep="none")
    assert flat.hierarchy.is_flat and flat.train[0].labels == ("x##y",)
    with pytest.raises(LabelwiseError, match="`hierarchy_sep`"):
        load_dataset(folder, hierarchy_sep=",")


# ---- the decision rule ------------------------------------------------------------------------------------------
def test_conflicts_are_settled_by_the_rule():
    labels = ["p", "p##c", "q", "q##d"]
    tree = Hierarchy.from_labels(labels)
    probs = np.array([[0.45, 0.90, 0.10, 0.55],    # p misses by a little, c clears by a lot; q misses by a lot
                      [0.80, 0.30, 0.60, 0.70],    # already consistent: unchanged by every rule
                      [0.20, 0.60, 0.49, 0.52]])
    decide_ = lambda **kw: decision_matrix(probs, 0.5, hierarchy=tree, **kw).tolist()  # noqa: E731
    assert decide_() == decide_(rule="add") == [[1, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 1]]  # the child wins
    assert decide_(rule="drop") == [[0, 0, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0]]  # the child goes
    assert decide_(rule="sum") == [[1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 1, 1]]  # the larger margin wins
    assert decide_(mode="none") == (probs >= 0.5).astype(int).tolist()
    consistent = decision_matrix(probs, 0.5, hierarchy=tree)
    assert shown_matrix(consistent, tree, "leaves").tolist() == [[0, 1, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1]]
    assert shown_matrix(consistent, tree, "consistent").tolist() == consistent.tolist()
    assert inconsistent_count(probs, 0.5, hierarchy=tree) == 2
    # per-label thresholds move the margins: c clears 0.5 by less than p misses it, unless p's threshold is 0.4
    close_call = np.array([[0.45, 0.52, 0.1, 0.1]])
    assert decision_matrix(close_call, 0.5, hierarchy=tree, rule="sum").tolist() == [[0, 0, 0, 0]]
    assert decision_matrix(close_call, [0.4, 0.5, 0.5, 0.5], hierarchy=tree, rule="sum").tolist() == [[1, 1, 0, 0]]
    with pytest.raises(LabelwiseError, match="`hierarchy` must be one of consistent, leaves, none"):
        decision_matrix(probs, 0.5, hierarchy=tree, mode="paths")


def test_top_k_counts_paths():
    tree = Hierarchy.from_labels(TREE)
    probs = np.array([[0.9, 0.8, 0.7, 0.6, 0.55, 0.52], [0.3, 0.2, 0.1, 0.45, 0.35, 0.4]])
    one_path = decision_matrix(probs, 0.5, top_k_max=1, hierarchy=tree)
    assert one_path.tolist()[0] == [1, 1, 0, 0, 0, 0]  # the most probable deepest node, with its parent
    assert decision_matrix(probs, 0.5, top_k_min=1, hierarchy=tree).tolist()[1] == [0, 0, 0, 1, 0, 0]
    two = decision_matrix(probs, 0.5, top_k_min=2, hierarchy=tree).tolist()[1]
    assert two == [1, 0, 0, 1, 1, 1]  # 财经, then 港股 with its ancestors (still one path), then 体育: two paths
    three = decision_matrix(probs, 0.5, top_k_min=3, top_k_max=3, hierarchy=tree)
    assert (tree.ends(three).sum(axis=1) == 3).all() and not tree.inconsistent(three).any()


def _random_tree(rng, n):
    parents = [-1] + [int(rng.integers(-1, i)) for i in range(1, n)]
    labels = []
    for i, p in enumerate(parents):
        labels.append(f"n{i}" if p < 0 else f"{labels[p]}##n{i}")
    return labels


def test_the_sum_rule_is_the_best_closed_set():
    rng = np.random.default_rng(0)
    for _ in range(40):
        labels = _random_tree(rng, int(rng.integers(2, 8)))
        tree = Hierarchy.from_labels(labels)
        margins = rng.normal(size=(1, len(labels)))
        closed = [s for s in itertools.product([0, 1], repeat=len(labels))
                  if not tree.inconsistent(np.array([s])).any()]
        best = max(float(np.dot(s, margins[0])) for s in closed)
        assert float(np.dot(tree.best_closed(margins)[0], margins[0])) == pytest.approx(best)


@pytest.mark.parametrize("rule", ["sum", "add", "drop"])
def test_every_rule_and_bound_gives_consistent_rows(rule):
    rng = np.random.default_rng(1)
    for _ in range(30):
        labels = _random_tree(rng, 9)
        tree = Hierarchy.from_labels(labels)
        probs = rng.random((20, len(labels)))
        thresholds = rng.uniform(0.2, 0.8, len(labels))
        k_min = int(rng.integers(0, 3))
        k_max = None if rng.random() < 0.5 else int(rng.integers(max(k_min, 1), 4))
        out = decision_matrix(probs, thresholds, k_min, k_max, hierarchy=tree, rule=rule)
        assert not tree.inconsistent(out).any()
        ends = tree.ends(out).sum(axis=1)
        assert ((ends >= k_min) | (out.sum(axis=1) == len(labels))).all()
        assert k_max is None or (ends <= k_max).all()


def test_a_flat_label_set_is_decided_exactly_as_before():
    rng = np.random.default_rng(2)
    probs = rng.random((50, 7))
    flat = Hierarchy.from_labels([f"l{i}" for i in range(7)])
    for k_min, k_max in ((0, None), (2, None), (1, 3), (0, 1)):
        want = np.zeros_like(probs, dtype=np.int8)
        for row, ids in enumerate(decide(probs, 0.6, k_min, k_max)):
            want[row, ids] = 1
        for mode in ("consistent", "leaves", "none"):
            np.testing.assert_array_equal(decision_matrix(probs, 0.6, k_min, k_max, flat, mode), want)


# ---- per-level metrics ------------------------------------------------------------------------------------------
def test_level_metrics_by_hand():
    tree = Hierarchy.from_labels(["a", "a##x", "a##y", "b"])
    gold = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 1]])
    pred = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1]])
    level1, level2 = level_metrics(gold, pred, tree)
    # level 1 (a, b): tp a=3, b=1; fn b=1 → micro 2·4/(8+0+1); a F1 1, b F1 2/3; exact rows 3 of 4
    assert level1["labels"] == 2 and level1["micro_f1"] == pytest.approx(100 * 8 / 9)
    assert level1["macro_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2) and level1["accuracy"] == pytest.approx(75)
    # level 2 (x, y): x tp 2 fp 1 → 0.8; y fn 1 → 0; micro 2·2/(4+1+1); rows 1, 3, 4 exact
    assert level2["micro_f1"] == pytest.approx(100 * 4 / 6) and level2["macro_f1"] == pytest.approx(40)
    assert level2["accuracy"] == pytest.approx(75)
    metrics = evaluate_predictions(gold, pred.astype(np.float32), tree.labels, 0.5, hierarchy=tree)
    assert metrics["hierarchy"]["levels"] == [level1, level2] and [r["level"] for r in metrics["per_label"]] == \
        [1, 2, 2, 1]
    report = format_report({**metrics, "split": "dev", "thresholds": "0.5", "zero_division": "z"})
    assert "Level 1 Label Performance: Macro F1 score: 83.33 | Micro F1 score: 88.89 | Accuracy: 75.00" in report
    assert "Level 2 Label Performance: Macro F1 score: 40.00 | Micro F1 score: 66.67 | Accuracy: 75.00" in report
    table = report.split("\n\n", 1)[1].splitlines()[1:]
    assert [line.split("  ")[0] for line in table] == ["a", "", "", "b"]
    assert table[1].startswith("  x ") and table[2].startswith("  y ")


def test_a_flat_evaluation_prints_what_it_printed():
    labels = ["婚后有子女", "限制行为能力子女抚养", "支付抚养费"]
    rng = np.random.default_rng(3)
    gold, probs = (rng.random((30, 3)) > 0.5).astype(np.int8), rng.random((30, 3)).astype(np.float32)
    plain = evaluate_predictions(gold, probs, labels, 0.5)
    flat = evaluate_predictions(gold, probs, labels, 0.5, hierarchy=Hierarchy.from_labels(labels))
    assert plain == flat and "hierarchy" not in flat
    assert set(flat["per_label"][0]) == {"label", "support", "support_pct", "precision", "recall", "f1", "predicted"}
    report = format_report({**flat, "split": "dev", "thresholds": "0.5", "zero_division": "z"})
    assert "Level" not in report and "Consistency" not in report
    rows = report.split("\n\n", 1)[1].splitlines()
    assert rows[0].split() == ["label", "support", "%", "P", "R", "F1"]
    assert [row.split()[0] for row in rows[1:]] == labels


# ---- end to end on a tiny tree ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tree_small(tmp_path_factory):
    """300 train / 80 dev lines of data/divorce_tree (two levels), and a data.txt of 8 dev texts."""
    return make_subset(REPO / "data" / "divorce_tree", tmp_path_factory.mktemp("tree_small"), 300, 80)


@pytest.fixture(scope="module")
def tree_checkpoint(tmp_path_factory, tiny_zh_encoder, tree_small):
    return _train_tiny(tiny_zh_encoder, tree_small, tmp_path_factory.mktemp("ckpt_tree") / "checkpoint")


@pytest.fixture(scope="module")
def random_tree_model(tmp_path_factory, tiny_zh_encoder, tree_small):
    """A random head: probabilities near 0.5, so the raw decisions break the tree often."""
    return Classifier.load(untrained_checkpoint(tiny_zh_encoder, tree_small, tmp_path_factory.mktemp("rnd") / "c"),
                           device="cpu")


def test_training_keeps_the_separator_and_predictions_are_consistent(tree_checkpoint, tree_small, tmp_path):
    assert read_meta(tree_checkpoint).hierarchy_sep == "##"
    clf = Classifier.load(tree_checkpoint, device="cpu")
    assert clf.hierarchy.depth == 2
    out = tmp_path / "output.txt"
    predictions = predict_file(clf, tree_small / "data.txt", out, top_k_min=1)
    assert predictions and all(p.labels and is_closed(clf.labels, p.labels) for p in predictions)
    ev = evaluate(clf, tree_small, "dev")
    assert ev.metrics["hierarchy"]["inconsistent_after"] == 0
    assert [row["level"] for row in ev.metrics["hierarchy"]["levels"]] == [1, 2]


def test_evaluate_counts_and_removes_inconsistent_predictions(random_tree_model, tree_small, tmp_path):
    clf = random_tree_model
    ev = evaluate(clf, tree_small, "dev")
    section = ev.metrics["hierarchy"]
    assert section["inconsistent_before"] > 0 and section["inconsistent_after"] == 0
    assert not clf.hierarchy.inconsistent(ev.decisions()).any()
    bad = tmp_path / "bad_case.txt"
    write_bad_cases(ev, bad)
    rows = [line.split("\t") for line in bad.read_text(encoding="utf-8").splitlines()[1:]]
    assert rows and all(is_closed(clf.labels, [x for x in row[2].split(",") if x]) for row in rows)
    raw = evaluate(clf, tree_small, "dev", hierarchy="none")
    assert raw.metrics["hierarchy"]["inconsistent_after"] == section["inconsistent_before"]
    text = format_report(ev.metrics)
    assert f"Consistency: {section['inconsistent_before']} of 80 texts had a label without its parent" in text
    assert "Level 2 Label Performance: Macro F1 score:" in text


def test_leaves_mode_shows_the_deepest_labels(random_tree_model, tree_small, tmp_path):
    clf = random_tree_model
    texts = (tree_small / "data.txt").read_text(encoding="utf-8").splitlines()
    full = clf.predict(texts)
    leaves = clf.predict(texts, hierarchy="leaves")
    tree = clf.hierarchy
    for f, leaf in zip(full, leaves):
        assert set(leaf.labels) <= set(f.labels)
        assert all(tree.parents[tree.index(n)] < 0 or clf.labels[tree.parents[tree.index(n)]] not in leaf.labels
                   for n in leaf.labels)
        assert set(tree.complete(leaf.labels)[0]) == set(f.labels)
    ev = evaluate(clf, tree_small, "dev", hierarchy="leaves")
    assert ev.metrics["micro"] == evaluate(clf, tree_small, "dev").metrics["micro"]  # metrics count every node


def test_cli_hierarchy_flag_and_report(random_tree_model, tree_small, tmp_path, capsys):
    model = str(random_tree_model.path)
    out = tmp_path / "out.txt"
    assert main(["-q", "predict", "--dataset_dir", str(tree_small), "--params_path", model, "--output_file", str(out),
                 "--hierarchy", "none", "--device", "cpu"]) == 0
    capsys.readouterr()
    raw = [line.split("\t")[1] for line in out.read_text(encoding="utf-8").splitlines()]
    assert any(not is_closed(random_tree_model.labels, [x for x in r.split(",") if x]) for r in raw)
    html = tmp_path / "report.html"
    assert main(["-q", "evaluate", "--dataset_dir", str(tree_small), "--params_path", model, "--device", "cpu",
                 "--bad_case_file", str(tmp_path / "bad.txt"), "--report", str(html), "--format", "json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["hierarchy"]["mode"] == "consistent" and metrics["hierarchy"]["inconsistent_after"] == 0
    page = html.read_text(encoding="utf-8")
    assert "id='label-tree'" in page and "Level 1 Label Performance" in page and "support" in page


def test_the_service_returns_consistent_labels_and_nested_paths(random_tree_model):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from labelwise.serve.app import create_app

    texts = ["原告与被告婚后育有一子，现随原告生活。", "双方共同财产房屋一套。"]
    with TestClient(create_app(random_tree_model)) as client:
        result = client.post("/models/cls_multi_label", json={"data": {"text": texts}}).json()["result"]
        leaves = client.post("/predict", json={"texts": texts, "hierarchy": "leaves"}).json()["predictions"]
    want = random_tree_model.predict(texts)
    for row, labels, w in zip(result["predictions"], result["label"], want):
        assert labels == w.labels and is_closed(random_tree_model.labels, labels)
        nested = [(n["label"], [c["label"] for c in n["children"]]) for n in row["tree"]]
        assert sorted(label for label, _ in nested) == sorted(x for x in labels if "##" not in x)
        assert sorted(c for _, kids in nested for c in kids) == sorted(x for x in labels if "##" in x)
    assert [p["labels"] for p in leaves] == [p.labels for p in random_tree_model.predict(texts, hierarchy="leaves")]


def test_a_model_whose_labels_are_no_tree_is_decided_flat(caplog):
    meta = CheckpointMeta(labels=["x##y", "z"])
    clf = Classifier(backend=None, tokenizer=None, meta=meta)
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        assert clf.hierarchy.is_flat
    assert "decided as flat labels" in caplog.text
    assert clf.decode(np.array([[0.9, 0.2]]))[0].labels == ["x##y"]


def test_multi_hot_of_completed_examples_has_every_ancestor(tmp_path):
    ds = load_dataset(write_dataset(tmp_path / "d", TREE, ["t\t财经##股票##港股"]))
    assert multi_hot(ds.train, ds.labels).tolist() == [[0, 0, 0, 1, 1, 1]]
