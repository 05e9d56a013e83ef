"""Label trees through the deployment flow, with a separator other than ``##`` (``子女/婚后有子女``): training's
scores, pruning, the ONNX export, the Triton post-processing, retrieval indexes and the import / zero-shot flags."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, FakeTensor
from labelwise.cli.main import main
from labelwise.data.dataset import load_dataset, multi_hot, read_labels
from labelwise.data.hierarchy import Hierarchy
from labelwise.errors import LabelwiseError
from labelwise.evaluation.decision import HIERARCHY_MODES, chosen_ids, decision_matrix, shown_matrix, sigmoid
from labelwise.evaluation.metrics import evaluate_predictions, headline
from labelwise.model.checkpoint import read_meta
from labelwise.predict.classifier import Classifier

sys.path.insert(0, str(REPO / "benchmarks" / "data"))
import make_tree_datasets as trees  # noqa: E402

POSTPROCESS = REPO / "src" / "labelwise" / "serve" / "triton" / "postprocess_model.py"


def closed(tree: Hierarchy, names) -> bool:
    """Every label's parent is among ``names``."""
    return all(tree.parents[tree.index(n)] < 0 or tree.labels[tree.parents[tree.index(n)]] in names for n in names)


@pytest.fixture(scope="module")
def slash_tree(divorce_small, tmp_path_factory) -> Path:
    """divorce_small as the 5-parent tree written with ``/``; train lines list their leaves only."""
    folder = tmp_path_factory.mktemp("slash_tree")
    for name, content in trees.build(divorce_small, trees.DIVORCE_GROUPS, []).items():
        if name.endswith(".txt"):
            content = content.replace("##", "/")
        if name == "train.txt":
            content = "".join(f"{text}\t{','.join(x for x in labels.split(',') if '/' in x)}\n" for text, labels in
                              (line.split("\t") for line in content.splitlines()))
        (folder / name).write_text(content, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def slash_model(tiny_zh_encoder, slash_tree, tmp_path_factory) -> Path:
    """The tiny encoder with a random head on slash_tree's labels, its metadata saying ``hierarchy_sep`` /."""
    import torch

    from labelwise.model.checkpoint import CheckpointMeta, save_checkpoint
    from labelwise.model.encoders import build_model

    labels = read_labels(slash_tree / "label.txt")
    torch.manual_seed(0)
    model, tokenizer, _ = build_model(str(tiny_zh_encoder), labels)
    folder = tmp_path_factory.mktemp("slash_model") / "ckpt"
    save_checkpoint(folder, model, tokenizer, CheckpointMeta(labels=labels, max_seq_length=64,
                                                             base_model=str(tiny_zh_encoder), hierarchy_sep="/"))
    return folder


def test_the_slash_tree_reads_as_a_tree(slash_tree):
    ds = load_dataset(slash_tree, hierarchy_sep="/")
    assert ds.hierarchy.depth == 2 and ds.added_parents > 0  # the leaf-only lines got their parents
    assert load_dataset(slash_tree).hierarchy.is_flat  # with ##, the names are flat


# ---- training's scores --------------------------------------------------------------------------------------
def test_training_scores_count_the_consistent_decisions(slash_model, slash_tree, caplog):
    from labelwise.model.checkpoint import load_checkpoint
    from labelwise.training.scoring import evaluate_model, log_summary, score_checkpoint

    model, tokenizer, meta = load_checkpoint(slash_model)
    ds = load_dataset(slash_tree, hierarchy_sep="/")
    tree, y = ds.hierarchy, multi_hot(ds.dev, ds.labels)
    probs, metrics = evaluate_model(model, tokenizer, meta, ds.dev, ds.labels, 16)
    assert tree.inconsistent(decision_matrix(probs, 0.5, mode="none")).sum() > 5  # raw decisions break the tree
    assert metrics == evaluate_predictions(y, probs, ds.labels, 0.5, hierarchy=tree)  # what the best epoch uses
    assert metrics["micro"] != evaluate_predictions(y, probs, ds.labels, 0.5)["micro"]
    score_checkpoint(model, tokenizer, meta, probs, ds.dev, ds.dev[:40], 1, batch_size=16)
    saved = meta.metrics
    assert saved["dev@0.5"] == headline(metrics)
    assert saved["dev@tuned"] == headline(evaluate_predictions(y, probs, ds.labels, meta.thresholds, hierarchy=tree))
    final = evaluate_predictions(y, probs, ds.labels, meta.thresholds, hierarchy=tree)
    assert [r["dev_f1"] for r in saved["per_label"]] == [round(r["f1"], 2) for r in final["per_label"]]
    levels = saved["levels"]
    assert set(levels) == {"dev", "test"} and levels["dev"]["levels"] == final["hierarchy"]["levels"]
    assert levels["dev"]["inconsistent_after"] == 0 and levels["dev"]["separator"] == "/"
    json.dumps(saved)  # stored in labelwise.json
    with caplog.at_level(logging.INFO, logger="labelwise"):
        log_summary(saved)
    assert "Level 1 Label Performance" in caplog.text and "Level 2 Label Performance" in caplog.text


# ---- prune → export → Triton ------------------------------------------------------------------------------------
@pytest.mark.integration  # prunes (trains) and exports a model
def test_another_separator_survives_prune_export_and_triton(slash_model, slash_tree, tmp_path, pb_utils):
    from labelwise.compress.config import PruneConfig
    from labelwise.compress.export import export_onnx
    from labelwise.compress.prune import prune
    from labelwise.serve.triton import write_triton_repo

    prune(PruneConfig(dataset_dir=str(slash_tree), params_path=str(slash_model), output_dir=str(tmp_path / "prune"),
                      width_mult_list=["1/2"], epochs=1, max_train_samples=32, save_steps=1000, progress=False))
    pruned = tmp_path / "prune" / "width_mult_0.5"
    meta = read_meta(pruned)
    assert meta.hierarchy_sep == "/" and meta.base_model == read_meta(slash_model).base_model
    assert meta.metrics["levels"]["dev"]["inconsistent_after"] == 0  # scored as a tree
    clf = Classifier.load(pruned, device="cpu")
    assert clf.hierarchy.depth == 2
    texts = [e.text for e in load_dataset(slash_tree, hierarchy_sep="/").dev[:40]]
    probs = clf.predict_proba(texts)
    assert clf.hierarchy.inconsistent(decision_matrix(probs, 0.5, mode="none")).any()
    want = [p.labels for p in clf.predict(texts, threshold=0.5)]
    assert all(closed(clf.hierarchy, labels) for labels in want)

    export_onnx(pruned, tmp_path / "export")
    exported = Classifier.load(tmp_path / "export")
    assert exported.backend.name == "onnx" and exported.hierarchy.sep == "/" and exported.hierarchy.depth == 2
    assert [p.labels for p in exported.predict(texts, threshold=0.5)] == want

    repo = write_triton_repo(tmp_path / "export", tmp_path / "triton", top_k_min=1, hierarchy="leaves")
    info = json.loads((repo / "cls_multi_label_postprocess" / "1" / "labels.json").read_text(encoding="utf-8"))
    assert info["parents"] == list(exported.hierarchy.parents) and info["hierarchy"] == "leaves"
    postprocess = load_postprocess(repo / "cls_multi_label_postprocess")
    logits = np.log(probs.astype(np.float64)) - np.log1p(-probs.astype(np.float64))
    [result] = postprocess.execute([{"logits": FakeTensor("logits", logits)}])
    got = [json.loads(row[0].decode("utf-8"))["label"] for row in result.outputs["RESULT"]]
    assert got == [p.labels for p in clf.predict(texts, top_k_min=1, hierarchy="leaves")]
    with pytest.raises(LabelwiseError, match="hierarchy"):
        write_triton_repo(tmp_path / "export", tmp_path / "bad", hierarchy="deepest")


# ---- the Triton post-processing rule ---------------------------------------------------------------------------

def load_postprocess(folder: Path, labels_json: dict | None = None):
    """The post-processing model of ``folder`` (its 1/model.py; else the packaged one, ``labels_json`` written)."""
    path = folder / "1" / "model.py"
    if labels_json is not None:
        (folder / "1").mkdir(parents=True)
        (folder / "1" / "labels.json").write_text(json.dumps(labels_json, ensure_ascii=False), encoding="utf-8")
        path = POSTPROCESS
    spec = importlib.util.spec_from_file_location(f"postprocess_{abs(hash(str(folder)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_repository": str(folder), "model_version": "1"})
    return model


@pytest.mark.parametrize("mode", HIERARCHY_MODES)
def test_triton_postprocess_decides_as_labelwise_on_a_tree(mode, tmp_path, pb_utils):
    labels = ["体育", "体育/足球", "体育/篮球", "财经", "财经/股票", "财经/股票/港股", "其他"]
    tree = Hierarchy.from_labels(labels, "/")
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 1.5, (300, len(labels)))
    probs = sigmoid(logits)
    thresholds = rng.uniform(0.3, 0.7, len(labels)).round(4)
    assert tree.inconsistent(probs >= thresholds).sum() > 30  # the raw decisions break the tree often
    for top_k_min in (0, 1, 2, 3):
        model = load_postprocess(tmp_path / f"{mode}{top_k_min}", {
            "labels": labels, "thresholds": thresholds.tolist(), "top_k_min": top_k_min,
            "parents": list(tree.parents), "hierarchy": mode})
        [result] = model.execute([{"logits": FakeTensor("logits", logits)}])
        rows = [json.loads(row[0].decode("utf-8")) for row in result.outputs["RESULT"]]
        decisions = decision_matrix(probs, thresholds, top_k_min, None, tree, mode)
        want = chosen_ids(probs, shown_matrix(decisions, tree, mode))
        assert [r["label"] for r in rows] == [[labels[j] for j in ids] for ids in want], (mode, top_k_min)
        assert all(r["confidence"] == [round(float(p[j]), 6) for j in ids] for r, p, ids in zip(rows, probs, want))
        if mode != "none":
            assert not tree.inconsistent(decisions).any()


def test_triton_postprocess_of_a_flat_model_and_an_older_repository(tmp_path, pb_utils):
    labels = ["a", "b", "c", "d"]
    rng = np.random.default_rng(3)
    logits = rng.normal(-0.5, 1.5, (100, 4))
    probs = sigmoid(logits)
    for name, extra in (("flat", {"parents": [-1] * 4, "hierarchy": "consistent"}), ("old", {})):
        model = load_postprocess(tmp_path / name, {"labels": labels, "thresholds": [0.5] * 4, "top_k_min": 1, **extra})
        [result] = model.execute([{"logits": FakeTensor("logits", logits)}])
        got = [json.loads(row[0].decode("utf-8"))["label"] for row in result.outputs["RESULT"]]
        assert got == [[labels[j] for j in ids] for ids in chosen_ids(probs, decision_matrix(probs, 0.5, 1))]


# ---- retrieval indexes ------------------------------------------------------------------------------------------
def test_an_index_stores_its_separator_and_reads_old_ones_as_hashes(slash_model, slash_tree, tiny_zh_encoder,
                                                                    tmp_path):
    from labelwise.training.index import add_to_index, build_index, remove_label

    folder = tmp_path / "index"
    build_index(str(slash_model), str(slash_tree), str(folder), vector_db="file", progress=False)  # the model's /
    info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    assert info["hierarchy_sep"] == "/"
    clf = Classifier.load(folder)
    assert clf.hierarchy.sep == "/" and clf.hierarchy.depth == 2
    texts = [e.text for e in load_dataset(slash_tree, hierarchy_sep="/").dev[:20]]
    assert all(closed(clf.hierarchy, p.labels) for p in clf.predict(texts, threshold=0.3))

    new = tmp_path / "new.txt"
    new.write_text("被告婚后染上赌博恶习\t过错/赌博\n", encoding="utf-8")
    added, new_labels = add_to_index(str(folder), str(new), progress=False)
    assert (added, new_labels) == (1, ["过错", "过错/赌博"])  # the new leaf brings its new parent
    with pytest.raises(LabelwiseError, match=r"label '过错' has children in this index \('过错/赌博'\)"):
        remove_label(str(folder), "过错")
    assert remove_label(str(folder), "过错/赌博") == (0, 1) and remove_label(str(folder), "过错") == (1, 0)

    info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    del info["hierarchy_sep"]  # an index written before the separator was stored
    (folder / "index.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    old = Classifier.load(folder)
    assert old.meta.hierarchy_sep == "##" and old.hierarchy.is_flat

    plain = tmp_path / "plain"  # a bare sentence encoder: ## unless told
    build_index(str(tiny_zh_encoder), str(slash_tree), str(plain), vector_db="file", progress=False)
    assert Classifier.load(plain).hierarchy.is_flat
    build_index(str(tiny_zh_encoder), str(slash_tree), str(plain), vector_db="file", progress=False,
                hierarchy_sep="/")
    assert Classifier.load(plain).hierarchy.depth == 2


# ---- the flags of the import and zero-shot verbs ----------------------------------------------------------------
def test_import_verbs_take_the_separator(tmp_path, capsys):
    doccano = tmp_path / "d.jsonl"
    doccano.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in [
        {"id": 1, "text": "梅西在世界杯决赛上梅开二度", "label": ["体育/足球"]},
        {"id": 2, "text": "央行宣布降准", "label": ["财经"]}]), encoding="utf-8")
    assert main(["-q", "doccano", "--doccano_file", str(doccano), "--save_dir", str(tmp_path / "a"), "--splits", "1",
                 "--hierarchy_sep", "/"]) == 0
    assert read_labels(tmp_path / "a" / "label.txt") == ["体育", "体育/足球", "财经"]
    assert "梅西在世界杯决赛上梅开二度\t体育,体育/足球" in (tmp_path / "a" / "train.txt").read_text(encoding="utf-8")
    assert main(["-q", "doccano", "--doccano_file", str(doccano), "--save_dir", str(tmp_path / "b"), "--splits",
                 "1"]) == 0
    assert read_labels(tmp_path / "b" / "label.txt") == ["体育/足球", "财经"]  # ## by default: a flat name

    studio = tmp_path / "min.json"
    studio.write_text(json.dumps([{"id": 1, "text": "英超第38轮", "taxonomy": {"taxonomy": [["体育", "足球", "英超"]]}}],
                                 ensure_ascii=False), encoding="utf-8")
    assert main(["-q", "labelstudio", "--labelstudio_file", str(studio), "--save_dir", str(tmp_path / "c"),
                 "--splits", "1", "--hierarchy_sep", "/"]) == 0
    assert read_labels(tmp_path / "c" / "label.txt") == ["体育", "体育/足球", "体育/足球/英超"]
    assert main(["-q", "labelstudio", "--labelstudio_file", str(studio), "--save_dir", str(tmp_path / "d"),
                 "--splits", "1", "--hierarchy_sep", "none"]) == 0
    assert read_labels(tmp_path / "d" / "label.txt") == ["英超"]  # flat: the last element
    capsys.readouterr()


def test_zeroshot_verb_takes_the_separator_and_the_naming(slash_tree, tiny_zh_encoder, tmp_path):
    from labelwise.cli.options import LabelPaths
    from labelwise.training.zeroshot import LABEL_NAMINGS

    choices = dataclasses.fields(LabelPaths)[1].metadata["choices"]
    assert choices == LABEL_NAMINGS  # the CLI's copy (its parser imports no torch) is the API's list
    save = tmp_path / "zs"
    assert main(["-q", "zeroshot", "--dataset_dir", str(slash_tree), "--save_dir", str(save), "--model_name",
                 str(tiny_zh_encoder), "--max_seq_length", "32", "--hierarchy_sep", "/", "--label_naming", "path"]) == 0
    meta = read_meta(save)
    assert meta.hierarchy_sep == "/" and meta.training_args["label_naming"] == "path"
    assert meta.training_args["label_words"]["子女/婚后有子女"] == "子女 婚后有子女"
    assert Classifier.load(save).hierarchy.depth == 2
