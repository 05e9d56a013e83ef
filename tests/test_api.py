"""The Python API's edges: what ``import labelwise`` gives, argument checks of the Classifier, and the shared
guards (a model's labels against a dataset's, outputs that exist or are also inputs)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from labelwise.data.dataset import (
    Example,
    check_same_labels,
    load_dataset,
    read_lines,
    save_dataset,
)
from labelwise.errors import LabelwiseError, OutputExistsError
from labelwise.files import check_outputs

TEXTS = ["婚生子杨某甲由原告抚养", "双方均认可价值6万元。"]


@pytest.fixture(scope="module")
def clf(tiny_zh_checkpoint):
    from labelwise import Classifier

    return Classifier.load(tiny_zh_checkpoint)


# ---- the package ---------------------------------------------------------------------------------------------
@pytest.mark.integration  # a new Python process
def test_top_level_names_and_no_torch_on_import():
    code = ("import sys, labelwise; assert 'torch' not in sys.modules, 'torch imported'; "
            "from labelwise import Classifier, TrainConfig, train, predict_file, evaluate; "
            "import labelwise.training as t; assert train is t.train and TrainConfig is t.TrainConfig; "
            "assert set(labelwise.__all__) <= set(dir(labelwise))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_prediction_output_has_its_own_module():
    import labelwise
    from labelwise.evaluation import evaluate
    from labelwise.predict import output

    assert labelwise.predict_file is output.predict_file
    assert not hasattr(evaluate, "predict_file") and not hasattr(evaluate, "format_predictions")


def test_one_sigmoid_and_one_html_escape():
    from labelwise.analysis import dirty, interpret_words
    from labelwise.evaluation import report
    from labelwise.evaluation.decision import sigmoid

    assert dirty.sigmoid is sigmoid and interpret_words.escape is report.escape
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning for very negative logits
        out = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])
    assert report.escape("<a href='x'>&</a>") == "&lt;a href=&#x27;x&#x27;&gt;&amp;&lt;/a&gt;"


# ---- Classifier: one string, argument checks ---------------------------------------------------------------
def test_a_single_string_is_one_text(clf):
    probs = clf.predict_proba(TEXTS[0])
    assert probs.shape == (1, len(clf.labels))
    np.testing.assert_array_equal(probs, clf.predict_proba([TEXTS[0]]))
    (one,) = clf.predict(TEXTS[0], top_k_min=1)
    assert one == clf.predict([TEXTS[0]], top_k_min=1)[0] and one.labels
    assert clf.features(TEXTS[0]).shape[0] == 1


@pytest.mark.parametrize("batch_size", [0, -3])
def test_batch_size_must_be_positive(clf, batch_size):
    for call in (clf.predict_proba, clf.predict, clf.features):
        with pytest.raises(LabelwiseError, match=f"batch_size must be a positive whole number.*got {batch_size}"):
            call(TEXTS, batch_size=batch_size)


@pytest.mark.parametrize("threshold, message", [
    (-0.1, "between 0 and 1.*got -0.1"), (1.5, "between 0 and 1.*got 1.5"), (float("nan"), "between 0 and 1.*nan"),
    ([0.5, 0.5], "a list of 20 .*got 2 values"), ([[0.5] * 20], "a list of 20"), ("high", "a number"),
])
def test_bad_thresholds_are_refused(clf, threshold, message):
    with pytest.raises(LabelwiseError, match=message) as err:
        clf.predict(TEXTS, threshold=threshold)
    assert "--" not in str(err.value)
    probs = clf.predict_proba(TEXTS)
    with pytest.raises(LabelwiseError, match=message):
        clf.decode(probs, threshold)


def test_thresholds_at_the_ends_and_per_label(clf):
    n = len(clf.labels)
    certain = clf.predict_proba(TEXTS) >= 1.0  # (almost surely none) probabilities that reach exactly 1
    assert all(len(p.labels) == n for p in clf.predict(TEXTS, threshold=0.0))  # 0: every label
    for row, p in zip(certain, clf.predict(TEXTS, threshold=1.0, top_k_min=1)):  # 1: only certain ones, or the top 1
        assert len(p.labels) == max(1, row.sum())
    per_label = [1.0] * n
    per_label[3] = 0.0
    for as_given in (per_label, np.array(per_label)):
        for row, p in zip(certain, clf.predict(TEXTS, threshold=as_given)):
            assert set(p.labels) == {clf.labels[3]} | {clf.labels[j] for j in np.flatnonzero(row)}


def test_evaluate_checks_its_threshold_and_labels(clf, tiny_zh_checkpoint, divorce_small, goemotions_small):
    from labelwise import evaluate

    with pytest.raises(LabelwiseError, match="between 0 and 1"):
        evaluate(clf, divorce_small, threshold=2.0)
    with pytest.raises(LabelwiseError, match="labels differ") as err:
        evaluate(clf, goemotions_small)
    message = str(err.value)
    assert str(goemotions_small / "label.txt") in message and str(tiny_zh_checkpoint) in message
    assert "the model has 20 labels, the file 28" in message and "--" not in message


# ---- the label-set check -----------------------------------------------------------------------------------
def test_check_same_labels_names_both_files_and_the_difference():
    check_same_labels(["a", "b"], ["a", "b"], "ckpt", "data/label.txt")  # same: nothing
    with pytest.raises(LabelwiseError) as err:
        check_same_labels(["a", "b", "c"], ["a", "b", "x", "y", "z", "w"], "ckpt", "data/label.txt")
    message = str(err.value)
    assert message.startswith("data/label.txt: the labels differ from those of the model in ckpt")
    assert "the model has 3 labels, the file 6" in message
    assert "only in the file: 'x', 'y', 'z' and 1 more" in message and "only in the model: 'c'" in message
    assert message.endswith("use the dataset the model was trained on, or a model trained on this dataset")
    with pytest.raises(LabelwiseError, match="same names in another order"):
        check_same_labels(["a", "b"], ["b", "a"])


# ---- the output guard --------------------------------------------------------------------------------------
def test_check_outputs_refuses_inputs_and_existing_files(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("x\n", encoding="utf-8")
    with pytest.raises(LabelwiseError, match="this output is also an input"):
        check_outputs([tmp_path / "sub" / ".." / "data.txt"], [data], overwrite=True)  # the same file, spelt otherwise
    with pytest.raises(OutputExistsError, match=r"data.txt: already exists; choose another output path") as err:
        check_outputs([data, tmp_path / "new.txt"])
    assert err.value.paths == [data] and "--" not in str(err.value)
    assert check_outputs([data, tmp_path / "new.txt"], [None], overwrite=True) == [data, tmp_path / "new.txt"]


def test_check_outputs_for_folders_replaced_as_a_whole(tmp_path):
    ours, foreign, empty = tmp_path / "ours", tmp_path / "foreign", tmp_path / "empty"
    for folder in (ours, foreign, empty):
        folder.mkdir()
    (ours / "export.json").write_text("{}", encoding="utf-8")
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    check_outputs([ours, empty, tmp_path / "missing"], marker="export.json")
    with pytest.raises(OutputExistsError, match="foreign: exists and was not written by labelwise"):
        check_outputs([foreign], marker="export.json", overwrite=True)
    with pytest.raises(LabelwiseError, match="replaced as a whole, but it holds the input"):
        check_outputs([ours], [ours / "checkpoint"], marker="export.json")


def test_predictions_and_bad_cases_never_replace_their_input(clf, divorce_small, tmp_path):
    from labelwise import evaluate, predict_file
    from labelwise.evaluation.evaluate import write_bad_cases

    divorce_small = shutil.copytree(divorce_small, tmp_path / "divorce")
    data = tmp_path / "data.txt"
    data.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    with pytest.raises(LabelwiseError, match="this output is also an input"):
        predict_file(clf, data, data)
    assert data.read_text(encoding="utf-8") == "\n".join(TEXTS) + "\n"
    assert len(predict_file(clf, data, tmp_path / "out.txt")) == 2
    ev = evaluate(clf, divorce_small)
    with pytest.raises(LabelwiseError, match="dev.txt: this output is also an input"):
        write_bad_cases(ev, divorce_small / "dev.txt")
    assert (divorce_small / "dev.txt").read_text(encoding="utf-8").count("\n") == 80
    assert write_bad_cases(ev, tmp_path / "bad.txt") == len((tmp_path / "bad.txt").read_text().splitlines()) - 1


# ---- data helpers ------------------------------------------------------------------------------------------
def test_save_dataset_round_trip(tmp_path):
    train, dev = [Example("一", ("b",)), Example("二", ())], [Example("三", ("a", "b"))]
    save_dataset(tmp_path, ["b", "a"], {"train": train, "dev": dev}, data=["四"])
    ds = load_dataset(tmp_path)
    assert ds.labels == ["b", "a"] and ds.data == ["四"]
    assert [(e.text, e.labels) for e in ds.train + ds.dev] == [(e.text, e.labels) for e in train + dev]
    assert read_lines(tmp_path / "label.txt") == ["b", "a"]


def test_cli_reports_bad_prediction_arguments_in_one_line(tiny_zh_checkpoint, divorce_small, tmp_path, capsys):
    from labelwise.cli.main import main

    base = ["-q", "predict", "--dataset_dir", str(divorce_small), "--params_path", str(tiny_zh_checkpoint),
            "--output_file", str(tmp_path / "o.txt")]
    assert main(base + ["--threshold", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "threshold must be between 0 and 1" in err and err.strip().count("\n") == 0
    assert main(base + ["--batch_size", "0"]) == 2
    err = capsys.readouterr().err
    assert "batch_size must be a positive whole number" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "o.txt").exists()


def test_library_errors_name_parameters_not_flags():
    from labelwise.training import finetune as training

    with pytest.raises(LabelwiseError) as err:
        training.TrainConfig(dataset_dir="x", batch_size=0).validate()
    assert "`batch_size`" in str(err.value) and "--" not in str(err.value)


def test_cli_turns_parameter_names_into_its_flags(tmp_path, capsys):
    from labelwise.cli.main import flag_message, main

    assert main(["-q", "train", "--dataset_dir", str(tmp_path), "--batch_size", "0"]) == 2
    err = capsys.readouterr().err
    assert "--batch_size must be at least 1" in err and "`" not in err and err.strip().count("\n") == 0
    # a name the command has no flag for loses its backticks only
    assert flag_message("`splits` and `nope`", {"--splits"}) == "--splits and nope"
