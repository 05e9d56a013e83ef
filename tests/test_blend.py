"""Issue 29 part 3: the linear baseline blended into the model's scores per label, stored and applied on every route."""
from __future__ import annotations

import json

import numpy as np
import pytest

from labelwise.errors import LabelwiseError
from labelwise.model.blend import BASELINE_DIR, LINEAR_FILE, Blend, LinearScorer, fit_blend, load_blend
from labelwise.training.baseline import LinearBaseline

TEXTS = ["the cat sat on the mat", "dogs run fast", "cats and dogs play", "a fast cat", "the dog sat down",
         "nothing here at all", "birds sing", "a cat and a bird"]
Y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1], [1, 0, 1]])


@pytest.mark.parametrize("texts", [TEXTS, ["婚后生有一女", "原告要求离婚", "被告同意离婚并抚养女儿", "双方无共同财产"]])
def test_stored_baseline_scores_as_scikit_learn_does(texts, tmp_path):
    y = Y[:len(texts)]
    base = LinearBaseline().fit(texts, y)
    scorer = base.scorer()
    new = ["a cat ran after the dog", "Dog DOG cat", "zzz", "", "婚后生有一子，原告要求离婚"]
    np.testing.assert_allclose(scorer.decision_function(new), base.decision_function(new), atol=1e-12)
    scorer.save(tmp_path / BASELINE_DIR)
    again = LinearScorer.load(tmp_path / BASELINE_DIR, y.shape[1])
    np.testing.assert_allclose(again.decision_function(new), base.decision_function(new), atol=1e-5)  # float32


def _blend_data(rng, n=400):
    y = (rng.random((n, 2)) < 0.3).astype(int)
    y[:3, 0] = 1  # label 0 has positives in every draw
    svm = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 0.5, y.shape)  # the SVM separates both labels
    model = np.where(y == 1, 3.0, -3.0) + rng.normal(0, 1.0, y.shape)  # the model separates both ...
    model[:, 0] = rng.normal(0, 1, n)  # ... but label 0, where it is noise
    return model, svm, y


def test_the_blend_leans_on_the_baseline_only_where_the_model_is_weak():
    model, svm, y = _blend_data(np.random.default_rng(0))
    scorer = LinearScorer("word", (1, 1), ["a"], np.ones(1), np.zeros((2, 1)), np.zeros(2))
    blend = fit_blend(model, svm, y, scorer, shrinkage=0)
    assert blend is not None and blend.weights[0] == 0.0 and blend.weights[1] == 1.0
    assert blend.blended == 1 and blend.scale > 0  # larger SVM decisions → larger logits


def test_few_dev_examples_pull_a_label_towards_the_shared_weight():
    rng = np.random.default_rng(1)
    y = (rng.random((400, 6)) < 0.3).astype(int)
    y[:, 0], y[:2, 0] = 0, 1  # label 0: two dev positives, which only the SVM finds
    model = np.where(y == 1, 3.0, -3.0) + rng.normal(0, 1.0, y.shape)  # the model finds labels 1-5 ...
    model[:, 0] = rng.normal(0, 1, len(y))  # ... but not label 0
    svm = rng.normal(0, 1, y.shape)  # the SVM is noise on labels 1-5 ...
    svm[:, 0] = np.where(y[:, 0] == 1, 1.0, -1.0) + rng.normal(0, 0.3, len(y))  # ... and finds label 0
    scorer = LinearScorer("word", (1, 1), ["a"], np.ones(1), np.zeros((6, 1)), np.zeros(6))
    own = fit_blend(model, svm, y, scorer, shrinkage=0)
    shrunk = fit_blend(model, svm, y, scorer, shrinkage=10)
    assert own.weights[0] < 1 and list(own.weights[1:]) == [1.0] * 5
    shared = shrunk.weights[0] * 12 / 10 - 2 * own.weights[0] / 10  # (2·own + 10·shared) / 12, solved for shared
    assert own.weights[0] < shrunk.weights[0] and min(abs(shared - g) for g in (0.25, 0.5, 0.75, 1.0)) < 1e-3


def test_no_blend_when_the_model_is_as_good_everywhere():
    rng = np.random.default_rng(2)
    y = (rng.random((300, 3)) < 0.3).astype(int)
    scorer = LinearScorer("word", (1, 1), ["a"], np.ones(1), np.zeros((3, 1)), np.zeros(3))
    assert fit_blend(np.where(y == 1, 5.0, -5.0), rng.normal(0, 1, y.shape), y, scorer) is None


def test_a_damaged_baseline_folder_is_one_line(tmp_path):
    from labelwise.model.checkpoint import CheckpointMeta

    scorer = LinearBaseline().fit(TEXTS, Y).scorer()
    meta = CheckpointMeta(labels=["a", "b", "c"], blend=Blend(np.array([0.5, 1, 1]), 1.0, 0.0, scorer).to_json())
    Blend(np.array([0.5, 1, 1]), 1.0, 0.0, scorer).save(tmp_path)
    assert load_blend(tmp_path, meta).blended == 1
    path = tmp_path / BASELINE_DIR / LINEAR_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(LabelwiseError, match=f"{LINEAR_FILE}: unreadable"):
        load_blend(tmp_path, meta)
    bad = CheckpointMeta(labels=["a", "b", "c"], blend={"weights": [0.5, 2], "scale": 1, "shift": 0})
    assert "blend" in bad.problem()


@pytest.fixture(scope="module")
def blended_checkpoint(tiny_zh_encoder, divorce_small, tmp_path_factory):
    """A tiny random encoder barely learns in 2 epochs; the character n-gram SVM does, so `--blend on` blends."""
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    save = tmp_path_factory.mktemp("blend") / "checkpoint"
    result = train(TrainConfig(dataset_dir=str(divorce_small), save_dir=str(save), model_name=str(tiny_zh_encoder),
                               epochs=2, learning_rate=1e-4, batch_size=16, max_seq_length=64, long_text="truncate",
                               blend="on", progress=False, seed=1))
    assert result.classifier.blend is not None  # the model in memory predicts as the folder will
    return save


@pytest.mark.integration
def test_training_stores_the_blend_and_every_backend_applies_it(blended_checkpoint, divorce_small, tmp_path):
    from labelwise.compress.export import export_onnx
    from labelwise.predict.classifier import Classifier

    meta = json.loads((blended_checkpoint / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["blend"] and min(meta["blend"]["weights"]) < 1, "the SVM beats the barely trained model on dev"
    assert (blended_checkpoint / BASELINE_DIR / LINEAR_FILE).is_file()
    assert "Blend:" in (blended_checkpoint / "README.md").read_text(encoding="utf-8")
    assert meta["metrics"]["blend"]["model alone dev@0.5"]["macro_f1"] <= meta["metrics"]["dev@0.5"]["macro_f1"] + 1
    texts = [line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()]
    clf = Classifier.load(blended_checkpoint)
    blended = clf.predict_proba(texts)
    clf.blend = None
    alone = clf.predict_proba(texts)
    assert np.abs(blended - alone).max() > 0.05  # the blend moves the scores
    export_onnx(blended_checkpoint, tmp_path / "export")
    assert (tmp_path / "export" / BASELINE_DIR / LINEAR_FILE).is_file()
    np.testing.assert_allclose(Classifier.load(tmp_path / "export").predict_proba(texts), blended, atol=1e-4)


@pytest.mark.integration
def test_triton_applies_the_blend_as_the_classifier_does(blended_checkpoint, divorce_small, tmp_path, pb_utils):
    """The reader model computes the TF-IDF SVM in numpy from the stored vocabulary and mixes it in per label."""
    from test_triton import serve_reader

    from labelwise.compress.export import export_onnx
    from labelwise.predict.classifier import Classifier
    from labelwise.serve.triton import write_triton_repo

    export_onnx(blended_checkpoint, tmp_path / "export")
    repo = write_triton_repo(tmp_path / "export", tmp_path / "repo")
    assert (repo / "cls_multi_label" / "1" / "weight.npy").is_file()
    texts = [line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()]
    texts = texts[:30] + ["  多个   空格\t和 English words, too  ", ""]
    got, probs = serve_reader(repo, pb_utils, texts)
    clf = Classifier.load(tmp_path / "export")
    np.testing.assert_allclose(probs, clf.predict_proba(texts), atol=1e-4)
    assert [g["label"] for g in got] == [p.labels for p in clf.predict(texts)]
    clf.blend = None
    assert np.abs(probs - clf.predict_proba(texts)).max() > 0.05  # and the blend mattered


@pytest.mark.integration
def test_a_pruned_student_of_a_blended_model_blends_with_weights_fitted_to_it(blended_checkpoint, divorce_small,
                                                                              tmp_path):
    from labelwise.compress.config import PruneConfig
    from labelwise.compress.prune import prune
    from labelwise.predict.classifier import Classifier

    prune(PruneConfig(dataset_dir=str(divorce_small), params_path=str(blended_checkpoint), output_dir=str(tmp_path),
                      width_mult_list=["1/2"], epochs=1, max_train_samples=64, save_steps=1000, progress=False))
    student = tmp_path / "width_mult_0.5"
    meta = json.loads((student / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["blend"] and (student / BASELINE_DIR / LINEAR_FILE).is_file()
    assert meta["metrics"]["blend"]["labels"] >= 1  # fitted on the student's own dev scores
    texts = [line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()]
    clf = Classifier.load(student)
    blended = clf.predict_proba(texts)
    clf.blend = None
    assert np.abs(blended - clf.predict_proba(texts)).max() > 0.05
