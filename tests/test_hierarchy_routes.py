"""Label trees through the routes around training: the tree datasets and their builder, zero-shot and few-shot
label names, retrieval (label-name rows, `index --add` of a new leaf), dirty-data suggestions, interpretation."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DIVORCE, GOEMOTIONS, REPO, untrained_checkpoint
from labelwise.data.dataset import Example, load_dataset, read_label_words
from labelwise.data.hierarchy import Hierarchy
from labelwise.errors import LabelwiseError

sys.path.insert(0, str(REPO / "benchmarks" / "data"))
import make_tree_datasets as trees  # noqa: E402


def write_files(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def divorce_tree_small(divorce_small, tmp_path_factory) -> Path:
    """conftest's divorce_small (300 train / 80 dev) turned into the 5-parent tree by the dataset builder."""
    files = trees.build(divorce_small, trees.DIVORCE_GROUPS, [])
    return write_files(tmp_path_factory.mktemp("divorce_tree_small"), files)


@pytest.fixture(scope="module")
def tree_checkpoint(tiny_zh_encoder, divorce_tree_small, tmp_path_factory) -> Path:
    return untrained_checkpoint(tiny_zh_encoder, divorce_tree_small, tmp_path_factory.mktemp("tree") / "ckpt")


# ---- the datasets and their builder ------------------------------------------------------------------------
def test_builder_turns_labels_into_paths_and_keeps_lines(tmp_path):
    source = write_files(tmp_path / "flat", {"label.txt": "b\na\nc\nz\n", "train.txt": "t1\ta,z\nt2\tc\nt3\t\n",
                                             "dev.txt": "d1\tb\n"})
    files = trees.build(source, {"G": ["a", "b"], "H": ["c"]}, ["z"])
    assert files["label.txt"].split() == ["G", "G##b", "G##a", "H", "H##c", "z"]  # children in the source's order
    assert files["train.txt"] == "t1\tG,G##a,z\nt2\tH,H##c\nt3\t\n"  # parents with leaves, label.txt order
    assert files["dev.txt"] == "d1\tG,G##b\n"
    stats = json.loads(files["stats.json"])
    assert (stats["parents"], stats["leaves"]) == (2, 4) and stats["splits"]["train"]["per_label"]["G"] == 1
    with pytest.raises(SystemExit, match=r"not placed \['z'\]"):
        trees.build(source, {"G": ["a", "b"], "H": ["c"]}, [])
    with pytest.raises(SystemExit, match="'a' is in two groups"):
        trees.build(source, {"G": ["a", "b"], "H": ["c", "a"]}, ["z"])


def test_committed_tree_datasets_are_up_to_date_and_load_as_trees():
    assert trees.main(["--check"]) == 0  # a fresh build equals the committed files
    ekman = load_dataset(REPO / "data" / "goemotions_ekman")
    tree = ekman.hierarchy
    assert tree.depth == 2 and [ekman.labels[i] for i in tree.levels[0]] == [
        "anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]
    assert len(tree.levels[1]) == 27 and ekman.added_parents == 0  # every line lists its parents already
    assert tree.children(ekman.labels.index("neutral")) == []
    assert [tree.name(j) for j in tree.children(ekman.labels.index("fear"))] == ["fear", "nervousness"]
    flat = load_dataset(GOEMOTIONS)
    assert [len(s) for s in (ekman.train, ekman.dev, ekman.test)] == [len(s) for s in (flat.train, flat.dev, flat.test)]
    for mine, theirs in zip(ekman.test[:500], flat.test[:500]):
        assert mine.text == theirs.text
        assert {tree.name(ekman.labels.index(x)) for x in mine.labels if "##" in x or x == "neutral"} == set(theirs.labels)
    divorce = load_dataset(REPO / "data" / "divorce_tree")
    assert divorce.hierarchy.depth == 2 and len(divorce.hierarchy.levels[0]) == 5 and len(divorce.labels) == 25
    assert [e.text for e in divorce.dev] == [e.text for e in load_dataset(DIVORCE).dev]


# ---- label names -------------------------------------------------------------------------------------------
def test_label_texts_name_a_path_by_its_last_element_or_in_words(tmp_path):
    from labelwise.training.zeroshot import label_texts

    (tmp_path / "label.txt").write_text("体育\n体育##足球\n体育##足球##英超==英格兰超级联赛\n财经\n", encoding="utf-8")
    words = read_label_words(tmp_path / "label.txt")
    tree = Hierarchy.from_labels(list(words), "##")
    assert label_texts(words, tree) == {"体育": "体育", "体育##足球": "足球", "体育##足球##英超": "英格兰超级联赛",
                                        "财经": "财经"}
    assert label_texts(words, tree, "path")["体育##足球"] == "体育 足球"
    flat = {"a##b": "a##b"}  # a flat label set keeps its names, whatever they hold
    assert label_texts(flat, Hierarchy.flat(["a##b"])) == flat
    with pytest.raises(LabelwiseError, match="label naming must be one of last, path"):
        label_texts(words, tree, "leaf")


def test_few_shot_anchors_carry_their_ancestors():
    from labelwise.training.fewshot import anchors

    tree = Hierarchy.from_labels(["体育", "体育##足球", "财经"], "##")
    got = anchors({"体育": "体育", "体育##足球": "足球", "财经": "财经"}, tree)
    assert got == [Example("体育", ("体育",)), Example("足球", ("体育", "体育##足球")), Example("财经", ("财经",))]
    assert anchors({"a": "x"}) == [Example("x", ("a",))]


def test_zero_shot_on_a_tree_embeds_last_elements_and_predicts_consistently(tiny_zh_encoder, divorce_tree_small,
                                                                           tmp_path):
    from labelwise.training.zeroshot import zero_shot

    clf = zero_shot(str(divorce_tree_small), str(tmp_path / "zs"), str(tiny_zh_encoder), max_seq_length=32)
    words = clf.meta.training_args["label_words"]
    assert words["子女##婚后有子女"] == "婚后有子女" and words["子女"] == "子女"
    assert not clf.hierarchy.is_flat
    texts = [e.text for e in load_dataset(divorce_tree_small).dev[:40]]
    for prediction in clf.predict(texts):
        for label in prediction.labels:
            if "##" in label:
                assert label.split("##")[0] in prediction.labels
    path_named = zero_shot(str(divorce_tree_small), str(tmp_path / "zs2"), str(tiny_zh_encoder), max_seq_length=32,
                           label_naming="path")
    assert path_named.meta.training_args["label_words"]["子女##婚后有子女"] == "子女 婚后有子女"


# ---- retrieval ----------------------------------------------------------------------------------------------
def test_index_label_rows_carry_parents_and_add_brings_new_parents(tree_checkpoint, divorce_tree_small, tmp_path):
    from labelwise.predict.classifier import Classifier
    from labelwise.predict.retrieval import read_index
    from labelwise.training.index import add_to_index, build_index

    folder = tmp_path / "index"
    build_index(str(tree_checkpoint), str(divorce_tree_small), str(folder), progress=False)
    rows = read_index(folder)[4]
    name_rows = {r["text"]: r["labels"] for r in rows if r["source"] == "label name"}
    assert name_rows["婚后有子女"] == ["子女", "子女##婚后有子女"] and name_rows["子女"] == ["子女"]
    new = tmp_path / "new.txt"
    new.write_text("双方共同饲养的宠物狗归原告所有\t财产##宠物归属\n"
                   "被告婚后染上赌博恶习\t过错##赌博\n"
                   "原告起诉要求被告返还彩礼\t彩礼##返还,财产##有夫妻共同财产\n", encoding="utf-8")
    added, new_labels = add_to_index(str(folder), str(new), progress=False)
    assert added == 3
    assert new_labels == ["财产##宠物归属", "过错", "过错##赌博", "彩礼", "彩礼##返还"]
    _, _, matrix, _, rows = read_index(folder)
    assert rows[-1]["labels"] == ["彩礼", "彩礼##返还", "财产", "财产##有夫妻共同财产"]
    assert rows[-3]["labels"] == ["财产", "财产##宠物归属"]
    clf = Classifier.load(folder)
    tree = clf.hierarchy
    assert not tree.is_flat and tree.labels[tree.parents[clf.labels.index("过错##赌博")]] == "过错"
    assert not tree.inconsistent(matrix).any()
    for prediction in clf.predict(["被告婚后染上赌博恶习", "双方共同饲养的宠物狗"]):
        assert all(label.split("##")[0] in prediction.labels for label in prediction.labels)
    bad = tmp_path / "bad.txt"
    bad.write_text("t\t体育##足球##体育\n", encoding="utf-8")
    with pytest.raises(LabelwiseError, match=r"bad.txt: its labels and the index's do not form a label tree"):
        add_to_index(str(folder), str(bad), progress=False)


# ---- analysis -----------------------------------------------------------------------------------------------
def test_dirty_suggestions_follow_the_tree(tree_checkpoint, divorce_tree_small):
    from labelwise.analysis.dirty import find_dirty
    from labelwise.evaluation.decision import decision_matrix
    from labelwise.predict.classifier import Classifier

    clf = Classifier.load(tree_checkpoint)
    train = load_dataset(divorce_tree_small).train[:60]
    ranking = find_dirty(clf, train)
    raw = decision_matrix(clf.predict_proba([e.text for e in train]), clf.thresholds, mode="none")
    assert clf.hierarchy.inconsistent(raw).any()  # the random head alone puts children without parents
    for labels in ranking.suggested:
        assert all(label.split("##")[0] in labels for label in labels)


def test_interpretation_completes_leaf_only_gold(tree_checkpoint):
    from labelwise.analysis.interpret_words import InterpretInput, interpret
    from labelwise.predict.classifier import Classifier

    clf = Classifier.load(tree_checkpoint)
    results = interpret(clf, [InterpretInput("原告与被告于2010年登记结婚，婚后育有一子", ["子女##婚后有子女"])], "ig",
                        n_steps=2)
    kinds = {r.label: r.kind for r in results}
    assert kinds.get("子女##婚后有子女") in ("predicted", "missed")
    assert kinds.get("子女") in ("predicted", "missed")  # gold now, never "wrong"
    assert all(r.gold == ["子女", "子女##婚后有子女"] for r in results)
    assert np.isfinite([r.probability for r in results]).all()
