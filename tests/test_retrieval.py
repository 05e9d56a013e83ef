"""Retrieval-based classification: the index folder, k-NN votes, adding labels without training, bad indexes."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from labelwise.cli.main import main
from labelwise.data.dataset import load_dataset
from labelwise.errors import LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.predict.retrieval import K_CHOICES, vote
from labelwise.training.index import add_to_index, build_index


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
    clf = build_index(str(untrained_zh_checkpoint), str(divorce_small), str(folder), progress=False)
    return folder, clf


def test_index_folder_round_trip(index, divorce_small):
    folder, built = index
    ds = load_dataset(divorce_small)
    assert {p.name for p in folder.iterdir()} == {"index.json", "vectors.safetensors", "texts.jsonl"}
    info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (folder / "texts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == info["size"] == len(ds.train) + len(ds.labels)  # training texts + one per label name
    assert rows[-1]["source"] == "label name" and rows[-1]["labels"] == [ds.labels[-1]]
    assert info["k"] in K_CHOICES and len(info["thresholds"]) == len(ds.labels)
    assert "dev@tuned" in info["metrics"]
    texts = [e.text for e in ds.dev[:10]]
    loaded = Classifier.load(folder)
    np.testing.assert_allclose(loaded.predict_proba(texts), built.predict_proba(texts), atol=1e-6)
    assert loaded.labels == ds.labels


def test_a_label_added_after_indexing_is_predicted_for_its_own_examples(index, tmp_path):
    folder, _ = index
    copy = tmp_path / "index"
    copy.mkdir()
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    more = tmp_path / "more.txt"
    texts = ["双方签订房屋租赁合同，约定租金每月三千元。", "被告拖欠租金半年未付。", "原告要求解除租赁合同并腾退房屋。"]
    more.write_text("".join(f"{t}\t租赁纠纷\n" for t in texts), encoding="utf-8")
    before = Classifier.load(copy)
    assert "租赁纠纷" not in before.labels
    added, new_labels = add_to_index(str(copy), str(more), progress=False)
    assert (added, new_labels) == (3, ["租赁纠纷"])
    after = Classifier.load(copy)
    assert after.labels[-1] == "租赁纠纷" and len(after.thresholds) == len(after.labels)
    for prediction in after.predict(texts):
        assert "租赁纠纷" in prediction.labels
    assert json.loads((copy / "index.json").read_text())["size"] == before.backend.vectors.shape[0] + 3


def test_index_cli_predict_and_evaluate(tiny_zh_checkpoint, divorce_small, tmp_path, capsys):
    folder = tmp_path / "index"
    assert main(["-q", "index", "--params_path", str(tiny_zh_checkpoint), "--dataset_dir", str(divorce_small),
                 "--index_dir", str(folder), "--k", "5"]) == 0
    assert "k 5" in capsys.readouterr().out
    out = tmp_path / "out.txt"
    assert main(["-q", "predict", "--index_dir", str(folder), "--data_file", str(divorce_small / "data.txt"),
                 "--output_file", str(out), "--with_scores"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 8  # one line per text of data.txt
    capsys.readouterr()
    assert main(["-q", "evaluate", "--index_dir", str(folder), "--dataset_dir", str(divorce_small),
                 "--bad_case_file", str(tmp_path / "bad.txt"), "--format", "json"]) == 0
    assert "micro" in json.loads(capsys.readouterr().out)


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
    assert approximate.backend.search is not None
    texts = ["原告要求离婚", "婚生子由原告抚养", "双方均认可价值6万元。"]
    np.testing.assert_allclose(approximate.predict_proba(texts), exact.predict_proba(texts), atol=1e-4)


def test_an_export_with_features_embeds_like_its_checkpoint(untrained_zh_checkpoint, divorce_small, tmp_path):
    from labelwise.compress.export import export_onnx

    export_onnx(untrained_zh_checkpoint, tmp_path / "export", features=True)
    by_torch = build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "a"), k=5,
                           progress=False)
    by_onnx = build_index(str(tmp_path / "export"), str(divorce_small), str(tmp_path / "b"), k=5, progress=False)
    assert by_onnx.backend.encoder.name == "onnx"
    texts = [e.text for e in load_dataset(divorce_small).dev[:8]]
    np.testing.assert_allclose(by_onnx.predict_proba(texts), by_torch.predict_proba(texts), atol=1e-3)
    export_onnx(untrained_zh_checkpoint, tmp_path / "plain")
    with pytest.raises(LabelwiseError, match="export again with --features"):
        build_index(str(tmp_path / "plain"), str(divorce_small), str(tmp_path / "c"), progress=False)


def test_the_service_serves_an_index(index):
    from fastapi.testclient import TestClient

    from labelwise.serve.app import create_app

    folder, built = index
    texts = ["原告要求离婚", "婚生子由原告抚养"]
    with TestClient(create_app(Classifier.load(folder), model_path=str(folder))) as client:
        assert client.get("/health").json()["backend"] == "retrieval"
        got = client.post("/predict", json={"texts": texts, "threshold": 0.0}).json()["predictions"]
    want = built.predict_proba(texts)
    for prediction, row in zip(got, want):
        np.testing.assert_allclose([prediction["probabilities"][label] for label in built.labels], row, atol=1e-5)
