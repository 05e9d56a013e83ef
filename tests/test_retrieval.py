"""Retrieval-based classification: the index folder, k-NN votes, adding and removing labels without training, bad
indexes. These indexes keep their vectors in the folder (`vector_db="file"`, the default without the milvus
extra); the same for an index in Milvus (the default with the extra): tests/test_vector_db.py."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import assert_served_like
from labelwise.cli.main import main
from labelwise.data.dataset import load_dataset, multi_hot, read_label_words
from labelwise.errors import LabelwiseError
from labelwise.evaluation.metrics import evaluate_predictions
from labelwise.predict.classifier import Classifier
from labelwise.predict.retrieval import K_CHOICES, SCALE, vote
from labelwise.training.index import add_to_index, build_index, remove_label


def test_vote_weights_neighbours_by_similarity():
    labels = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    neighbours = np.array([[0, 1], [2, 1]])
    sims = np.array([[0.9, 0.1], [0.5, 0.5]])
    scores = vote(neighbours, sims, labels, scale=20.0)
    assert scores[0, 0] > 0.99 and scores[0, 1] < 0.01  # the close neighbour decides
    np.testing.assert_allclose(scores[1], [0.5, 1.0], atol=1e-6)  # equal weights: label shares


@pytest.fixture(scope="module")
def index(tmp_path_factory, untrained_zh_checkpoint, divorce_small):
    """A random (untrained) tiny encoder keeps texts apart; the trained tiny fixtures map every text alike."""
    folder = tmp_path_factory.mktemp("retrieval") / "index"
    clf = build_index(str(untrained_zh_checkpoint), str(divorce_small), str(folder), vector_db="file", progress=False)
    return folder, clf


def copy_index(folder, to):
    shutil.copytree(folder, to)
    return to


def brute_force_scores(encoder: Classifier, folder, texts: list[str]) -> np.ndarray:
    """The vote of each text's k truly nearest rows, computed here from the folder's own files."""
    info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    stored = load_file(str(folder / "vectors.safetensors"))
    raw = encoder.features(texts)
    queries = raw / np.linalg.norm(raw, axis=1, keepdims=True) - stored["center"]
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    sims = queries @ stored["vectors"].T
    nearest = np.argsort(-sims, axis=1)[:, :info["k"]]
    top = np.take_along_axis(sims, nearest, axis=1)
    weights = np.exp(SCALE * (top - top.max(1, keepdims=True)))
    weights /= weights.sum(1, keepdims=True)
    return np.stack([w @ stored["labels"][n].astype(np.float64) for w, n in zip(weights, nearest)])


def test_index_folder_round_trip(index, divorce_small, untrained_zh_checkpoint):
    folder, built = index
    ds = load_dataset(divorce_small)
    assert {p.name for p in folder.iterdir()} == {"index.json", "vectors.safetensors", "texts.jsonl"}
    info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (folder / "texts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == info["size"] == len(ds.train) + len(ds.labels)  # training texts + one per label name
    assert [r["text"] for r in rows[:len(ds.train)]] == [e.text for e in ds.train]
    assert [r["labels"] for r in rows[:len(ds.train)]] == [list(e.labels) for e in ds.train]
    words = read_label_words(divorce_small / "label.txt")
    assert [(r["text"], r["labels"]) for r in rows[len(ds.train):]] == [(words[name], [name]) for name in ds.labels]
    stored = load_file(str(folder / "vectors.safetensors"))
    np.testing.assert_array_equal(stored["labels"], multi_hot([*ds.train], ds.labels).tolist() +
                                  np.eye(len(ds.labels), dtype=np.uint8).tolist())
    assert info["k"] in K_CHOICES and len(info["thresholds"]) == len(ds.labels)
    dev_texts = [e.text for e in ds.dev]
    loaded = Classifier.load(folder)
    probs = loaded.predict_proba(dev_texts)
    np.testing.assert_allclose(probs, built.predict_proba(dev_texts), atol=1e-6)
    assert loaded.labels == ds.labels
    # the scores are the vote of the true nearest neighbours, and the recorded dev figures are this index's
    np.testing.assert_allclose(probs, brute_force_scores(Classifier.load(untrained_zh_checkpoint), folder,
                                                         dev_texts).clip(1e-6, 1 - 1e-6), atol=1e-5)
    m = evaluate_predictions(multi_hot(ds.dev, ds.labels), probs, ds.labels, loaded.thresholds)
    assert info["metrics"]["dev@tuned"]["micro_f1"] == pytest.approx(m["micro"]["f1"], abs=0.5)
    assert info["metrics"]["dev@tuned"]["macro_f1"] == pytest.approx(m["macro"]["f1"], abs=0.5)


def test_a_label_added_after_indexing_is_predicted_for_its_own_examples(index, tmp_path, divorce_small,
                                                                       untrained_zh_checkpoint):
    folder, _ = index
    copy = copy_index(folder, tmp_path / "index")
    more = tmp_path / "more.txt"
    texts = ["双方签订房屋租赁合同，约定租金每月三千元。", "被告拖欠租金半年未付。", "原告要求解除租赁合同并腾退房屋。"]
    more.write_text("".join(f"{t}\t租赁纠纷\n" for t in texts), encoding="utf-8")
    before = Classifier.load(copy)
    assert "租赁纠纷" not in before.labels
    assert all("租赁纠纷" not in p.labels for p in before.predict(texts))
    added, new_labels = add_to_index(str(copy), str(more), progress=False)
    assert (added, new_labels) == (3, ["租赁纠纷"])
    after = Classifier.load(copy)
    assert after.labels == before.labels + ["租赁纠纷"] and len(after.thresholds) == len(after.labels)
    for prediction in after.predict(texts):
        assert "租赁纠纷" in prediction.labels
    assert after.backend.size == before.backend.size + 3
    # a dev text none of whose k nearest rows is new keeps exactly its old scores; one with a new neighbour changes
    dev = [e.text for e in load_dataset(divorce_small).dev]
    neighbours, _ = after.backend.neighbours(Classifier.load(untrained_zh_checkpoint).features(dev), after.backend.k)
    assert 0 < (neighbours >= before.backend.size).any(1).sum() < len(dev)  # some dev texts have a new neighbour
    untouched = (neighbours < before.backend.size).all(1)
    old, new = before.predict_proba(dev), after.predict_proba(dev)
    np.testing.assert_allclose(new[untouched, :-1], old[untouched], atol=1e-6)
    assert (new[~untouched, -1] > 1e-5).all()


def test_removing_a_label_drops_its_only_rows_and_keeps_the_rest(index, tmp_path, divorce_small):
    folder, _ = index
    copy = copy_index(folder, tmp_path / "index")
    ds = load_dataset(divorce_small)
    label = max(ds.labels, key=lambda name: sum(name in e.labels for e in ds.train))  # the most frequent label
    only = sum(list(e.labels) == [label] for e in ds.train) + 1  # + the row of its name
    shared = sum(label in e.labels and len(e.labels) > 1 for e in ds.train)
    assert main(["-q", "index", "--index_dir", str(copy), "--remove_label", label]) == 0
    clf = Classifier.load(copy)
    assert label not in clf.labels and len(clf.labels) == len(ds.labels) - 1 and len(clf.thresholds) == len(clf.labels)
    assert clf.backend.size == len(ds.train) + len(ds.labels) - only
    rows = [json.loads(line) for line in (copy / "texts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(label not in r["labels"] for r in rows)
    assert sum(r["source"] == "train" for r in rows) == len(ds.train) - only + 1
    # the rows that keep their vectors are exactly the kept ones of the original, in order
    old, new = load_file(str(folder / "vectors.safetensors")), load_file(str(copy / "vectors.safetensors"))
    old_rows = [json.loads(line) for line in (folder / "texts.jsonl").read_text(encoding="utf-8").splitlines()]
    kept = [i for i, r in enumerate(old_rows) if r["labels"] != [label]]
    np.testing.assert_array_equal(new["vectors"], old["vectors"][kept])
    assert sum(label in old_rows[i]["labels"] for i in kept) == shared
    with pytest.raises(LabelwiseError, match="no label"):
        remove_label(str(copy), label)


def check_cli_predict_and_evaluate(folder, dataset_dir, tmp_path, capsys) -> None:
    """`labelwise predict` and `evaluate` on an index say what the Python API says of it."""
    texts = (dataset_dir / "data.txt").read_text(encoding="utf-8").splitlines()
    out = tmp_path / "out.txt"
    assert main(["-q", "predict", "--index_dir", str(folder), "--data_file", str(dataset_dir / "data.txt"),
                 "--output_file", str(out), "--with_scores", "--top_k_min", "1"]) == 0
    clf = Classifier.load(folder)
    want = clf.predict(texts, top_k_min=1)
    got = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    assert [text for text, _ in got] == texts
    for (_, field), prediction in zip(got, want):
        pairs = [item.rsplit(":", 1) for item in field.split(",")]
        assert [label for label, _ in pairs] == prediction.labels
        np.testing.assert_allclose([float(score) for _, score in pairs], prediction.scores, atol=1e-4)
    capsys.readouterr()
    assert main(["-q", "evaluate", "--index_dir", str(folder), "--dataset_dir", str(dataset_dir),
                 "--bad_case_file", str(tmp_path / "bad.txt"), "--format", "json"]) == 0
    reported = json.loads(capsys.readouterr().out)
    ds = load_dataset(dataset_dir)
    m = evaluate_predictions(multi_hot(ds.dev, ds.labels), clf.predict_proba([e.text for e in ds.dev]), ds.labels,
                             clf.thresholds)
    assert reported["micro"]["f1"] == pytest.approx(m["micro"]["f1"], abs=1e-6)
    assert reported["macro"]["f1"] == pytest.approx(m["macro"]["f1"], abs=1e-6)


def test_index_cli_predict_and_evaluate(untrained_zh_checkpoint, divorce_small, tmp_path, capsys):
    folder = tmp_path / "index"
    assert main(["-q", "index", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(divorce_small),
                 "--index_dir", str(folder), "--k", "5", "--vector_db", "file"]) == 0
    ds = load_dataset(divorce_small)
    out = capsys.readouterr().out
    assert out.startswith(f"index of {len(ds.train) + len(ds.labels)} texts written to {folder} (k 5)")
    assert out.rstrip().endswith("; vectors in the folder (exact search)")
    assert "vectors" in load_file(str(folder / "vectors.safetensors"))
    assert json.loads((folder / "index.json").read_text(encoding="utf-8"))["k"] == 5
    check_cli_predict_and_evaluate(folder, divorce_small, tmp_path, capsys)


def test_damaged_or_missing_index_is_one_clear_line(index, tmp_path, divorce_small, capsys):
    folder, _ = index
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    data = ["--data_file", str(divorce_small / "data.txt"), "--output_file", str(tmp_path / "o.txt")]
    (broken / "texts.jsonl").write_text("", encoding="utf-8")  # rows no longer match the vectors
    assert main(["predict", "--index_dir", str(broken), *data]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "damaged index" in err and "build it again" in err
    (broken / "vectors.safetensors").write_bytes(b"not safetensors")
    assert main(["predict", "--index_dir", str(broken), *data]) == 2
    assert "damaged index" in capsys.readouterr().err
    assert main(["predict", "--index_dir", str(tmp_path), *data]) == 2
    assert "not a labelwise index" in capsys.readouterr().err


def test_approximate_search_without_faiss_says_how_to_get_it(untrained_zh_checkpoint, divorce_small, tmp_path,
                                                             monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss → ImportError, installed or not
    with pytest.raises(LabelwiseError, match="pip install faiss-cpu"):
        build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "i"), approximate=True,
                    progress=False)


@pytest.mark.parametrize("missing", ["pymilvus", "milvus_lite"])
def test_without_the_milvus_extra_the_default_index_keeps_its_vectors_in_the_folder(
        missing, untrained_zh_checkpoint, divorce_small, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setitem(sys.modules, missing, None)  # import → ImportError, installed or not
    folder = tmp_path / "index"
    with caplog.at_level("INFO", logger="labelwise"):
        assert main(["index", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(divorce_small),
                     "--index_dir", str(folder), "--k", "5"]) == 0
    assert "pip install 'labelwise[milvus]'" in caplog.text
    assert capsys.readouterr().out.rstrip().endswith("; vectors in the folder (exact search)")
    info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    assert info["format_version"] == 1 and "vector_db" not in info
    assert {p.name for p in folder.iterdir()} == {"index.json", "vectors.safetensors", "texts.jsonl"}
    assert Classifier.load(folder).backend.store.kind == "exact"


def test_an_index_in_milvus_without_pymilvus_says_how_to_get_it(untrained_zh_checkpoint, divorce_small, tmp_path,
                                                                monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(LabelwiseError, match=r"pip install 'labelwise\[milvus\]'"):
        build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "i"),
                    vector_db=str(tmp_path / "milvus.db"), progress=False)
    assert not (tmp_path / "i").exists()


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss-cpu is not installed (labelwise[ann])")
def test_approximate_search_finds_what_exact_search_finds(index, tmp_path):
    folder, exact = index
    info = json.loads((folder / "index.json").read_text())
    copy = tmp_path / "index"
    copy.mkdir()
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "index.json").write_text(json.dumps({**info, "approximate": True}))
    approximate = Classifier.load(copy)
    assert approximate.backend.store.kind == "faiss"
    texts = ["原告要求离婚", "婚生子由原告抚养", "双方均认可价值6万元。"]
    np.testing.assert_allclose(approximate.predict_proba(texts), exact.predict_proba(texts), atol=1e-4)


def test_an_export_with_features_embeds_like_its_checkpoint(untrained_zh_checkpoint, divorce_small, tmp_path):
    from labelwise.compress.export import export_onnx

    export_onnx(untrained_zh_checkpoint, tmp_path / "export", features=True)
    by_torch = build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "a"), k=5,
                           vector_db="file", progress=False)
    by_onnx = build_index(str(tmp_path / "export"), str(divorce_small), str(tmp_path / "b"), k=5, vector_db="file",
                          progress=False)
    assert by_onnx.backend.encoder.name == "onnx"
    texts = [e.text for e in load_dataset(divorce_small).dev[:8]]
    np.testing.assert_allclose(by_onnx.predict_proba(texts), by_torch.predict_proba(texts), atol=1e-3)
    export_onnx(untrained_zh_checkpoint, tmp_path / "plain")
    with pytest.raises(LabelwiseError, match="export again with --features"):
        build_index(str(tmp_path / "plain"), str(divorce_small), str(tmp_path / "c"), progress=False)


def test_the_service_serves_an_index(index):
    folder, built = index
    assert_served_like(folder, built, ["原告要求离婚", "婚生子由原告抚养"])
