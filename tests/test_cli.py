"""The command line end to end: train → evaluate → predict, output files, one-line errors; defaults from configs."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from labelwise.training.config import AdaptConfig

from labelwise.analysis.sparse import SparseConfig
from labelwise.cli.main import build_parser, main
from labelwise.cli.options import DatasetFiles, Decision, InterpretFiles, LabelPaths, ModelSource, RunOptions
from labelwise.compress.config import PruneConfig
from labelwise.select.run import SelectConfig
from labelwise.serve.config import ServeConfig
from labelwise.settings import from_args
from labelwise.training.config import TrainConfig


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labelwise", *args], capture_output=True, text=True, timeout=300,
                          env=env, check=False)


def test_train_evaluate_predict(tiny_zh_encoder, divorce_small, tmp_path, capsys):
    ckpt = tmp_path / "checkpoint"
    assert main(["-q", "train", "--dataset_dir", str(divorce_small), "--save_dir", str(ckpt), "--model_name",
                 str(tiny_zh_encoder), "--epochs", "1", "--learning_rate", "3e-3", "--max_seq_length", "48",
                 "--batch_size", "16", "--max_train_samples", "64"]) == 0
    assert "checkpoint saved to" in capsys.readouterr().out

    bad_case = tmp_path / "bad_case.txt"
    assert main(["-q", "evaluate", "--dataset_dir", str(divorce_small), "--params_path", str(ckpt),
                 "--bad_case_file", str(bad_case)]) == 0
    report = capsys.readouterr().out
    assert "Dev dataset size: 80" in report and "Macro avg" in report and "婚后有子女" in report
    lines = bad_case.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Text\tLabel\tPrediction" and all(line.count("\t") == 2 for line in lines[1:])
    dev_texts = {line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()}
    assert {line.split("\t")[0] for line in lines[1:]} <= dev_texts

    assert main(["-q", "evaluate", "--dataset_dir", str(divorce_small), "--params_path", str(ckpt),
                 "--bad_case_file", str(bad_case), "--format", "json", "--threshold", "0.3"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["size"] == 80 and len(metrics["per_label"]) == 20 and metrics["thresholds"] == "global 0.30"
    assert {"micro", "macro", "accuracy", "hamming_loss", "mAP", "lrap"} <= set(metrics)

    out = tmp_path / "output.txt"
    assert main(["-q", "predict", "--dataset_dir", str(divorce_small), "--params_path", str(ckpt),
                 "--output_file", str(out), "--with_scores", "--top_k_min", "1"]) == 0
    rows = out.read_text(encoding="utf-8").splitlines()
    texts = (divorce_small / "data.txt").read_text(encoding="utf-8").splitlines()
    assert [row.split("\t")[0] for row in rows] == texts
    for row in rows:
        field = row.split("\t")[1]
        assert field  # top_k_min 1: never empty
        for item in field.split(","):
            label, score = item.rsplit(":", 1)
            assert 0 < float(score) < 1 and label

    # --perf and evaluate score with the decision and length flags, as the Python API does with them
    from labelwise.evaluation.evaluate import evaluate
    from labelwise.predict.classifier import Classifier

    def api(max_seq_length=None, **decision) -> dict:
        clf = Classifier.load(ckpt)
        clf.max_seq_length = max_seq_length or clf.max_seq_length
        return evaluate(clf, divorce_small, "dev", **decision).metrics

    def f1s(metrics: dict) -> tuple[str, str]:
        return f"{metrics['micro']['f1']:.2f}", f"{metrics['macro']['f1']:.2f}"

    plain, bounded = api(), api(top_k_min=1, top_k_max=1)
    assert f1s(plain) != f1s(bounded)  # the flags change the figures, so the check below can fail
    capsys.readouterr()
    assert main(["-q", "predict", "--dataset_dir", str(divorce_small), "--params_path", str(ckpt), "--perf",
                 "--top_k_min", "1", "--top_k_max", "1"]) == 0
    line = capsys.readouterr().out
    found = re.match(r"dev size (\d+)  micro-F1 ([\d.]+)  macro-F1 ([\d.]+)  ([\d.]+) ms/sample \(batch 32, torch\)",
                     line)
    assert found, line
    assert int(found[1]) == 80 and (found[2], found[3]) == f1s(bounded) and float(found[4]) > 0

    short = api(max_seq_length=6)  # 4 tokens of each text: other probabilities, so other ranking figures
    assert (short["mAP"], short["lrap"]) != (plain["mAP"], plain["lrap"])
    assert main(["-q", "evaluate", "--dataset_dir", str(divorce_small), "--params_path", str(ckpt),
                 "--bad_case_file", str(bad_case), "--format", "json", "--max_seq_length", "6"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(short))
    assert main(["-q", "evaluate", "--dataset_dir", str(divorce_small), "--params_path", str(ckpt),
                 "--max_seq_length", "513"]) == 2
    assert capsys.readouterr().err.strip() == "labelwise: error: --max_seq_length 513: this model reads at most 512 tokens"


@pytest.mark.integration  # new Python processes
@pytest.mark.parametrize("args, message", [
    (["train", "--dataset_dir", "/nonexistent"], "/nonexistent: dataset folder not found"),
    (["evaluate", "--dataset_dir", ".", "--params_path", "/nonexistent"], "model folder not found"),
    (["train", "--dataset_dir", "{data}", "--model_name", "/no/such/model"], "model folder '/no/such/model' not found"),
])
def test_errors_are_one_line_without_traceback(args, message, divorce_small):
    run = run_cli(*[a.format(data=divorce_small) for a in args])
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0 and message in run.stderr


@pytest.mark.integration  # a new Python process
def test_bad_data_line_is_reported_with_its_number(tmp_path, divorce_small):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("label.txt", "dev.txt"):
        (bad / name).write_text((divorce_small / name).read_text(encoding="utf-8"), encoding="utf-8")
    (bad / "train.txt").write_text("婚生子由原告抚养\t婚后有子女\n第二行没有制表符\n", encoding="utf-8")
    run = run_cli("train", "--dataset_dir", str(bad))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{bad / 'train.txt'}:2: no tab between text and labels" in run.stderr


@pytest.mark.integration  # a new Python process
def test_hub_model_offline_says_so(divorce_small, tmp_path):
    # huggingface_hub reads HF_HUB_OFFLINE once, when it is imported: set it in a fresh process (the CLI), with
    # an empty cache, so that this holds on a machine with internet too
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    for name in ("HF_HUB_CACHE", "TRANSFORMERS_CACHE"):  # they would win over HF_HOME
        env.pop(name, None)
    run = run_cli("-q", "train", "--dataset_dir", str(divorce_small), "--save_dir", str(tmp_path / "c"),
                  "--model_name", "ernie-3.0-medium-zh", env=env)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    message = run.stderr.strip()
    assert message.count("\n") == 0  # one line: the LabelwiseError, nothing else
    assert message.startswith("labelwise: error: could not load model 'ernie-3.0-medium-zh'")
    assert re.search(r"offline.*--model_name m3e-small", message)  # says why, and what works offline
    assert not (tmp_path / "c").exists()


def leaf_commands(parser: argparse.ArgumentParser, path: tuple = ()):
    """(words, parser) of every command that runs something: ``("train",)``, ``("data", "sparse")``, ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from leaf_commands(sub, path + (name,))
            return
    yield path, parser


# each command: its required flags, and the configs its flags fill, as they must come out with nothing else given;
# a value the command sets on purpose is written out (a field it has no flag for is not compared)
SPLIT = [RunOptions(), DatasetFiles(label_file=None), LabelPaths()]  # --label_file: a path to check labels against
INTERPRET = [ModelSource(), DatasetFiles(dataset_dir="d")]
DEFAULTS = {
    "train": (["--dataset_dir", "d"], [TrainConfig(dataset_dir="d")]),
    "adapt": ([], [AdaptConfig()]),
    "zeroshot": (["--dataset_dir", "d"], [TrainConfig(dataset_dir="d"), LabelPaths()]),
    "demo": ([], [TrainConfig(dataset_dir="data/divorce", max_train_samples=2000, epochs=2)]),  # a short run
    "index": ([], [ModelSource(params_path=None, index_dir="index"), DatasetFiles(),
                   LabelPaths(hierarchy_sep="auto")]),  # writes an index; its separator: the model's
    "predict": ([], [ModelSource(), Decision(), DatasetFiles()]),
    "evaluate": (["--dataset_dir", "d"], [ModelSource(), Decision(), DatasetFiles(dataset_dir="d"), RunOptions()]),
    "export": ([], [ModelSource(), Decision()]),
    "prune": (["--dataset_dir", "d"], [PruneConfig(dataset_dir="d")]),
    "serve": ([], [ServeConfig(), ModelSource(model_path="export")]),  # serves an export folder
    "doccano": ([], SPLIT),
    "labelstudio": ([], SPLIT),
    "data sparse": (["--dataset_dir", "d"], [SparseConfig(dataset_dir="d")]),
    "data augment": (["--train_path", "t"], [SparseConfig(dataset_dir="d", create_n=2), RunOptions(), ModelSource()]),
    "data dirty": (["--dataset_dir", "d"], INTERPRET + [RunOptions()]),
    "interpret words": ([], [ModelSource(), DatasetFiles(),
                             InterpretFiles(interpret_result_file="interpret_words.html")]),
    "interpret examples": (["--dataset_dir", "d"], INTERPRET + [InterpretFiles(), RunOptions()]),
    "select": ([], [SelectConfig()]),
}


def test_every_command_takes_its_defaults_from_the_configs():
    commands = {" ".join(words) for words, _ in leaf_commands(build_parser())}
    assert commands == set(DEFAULTS)  # a new command says here what its defaults are
    for command, (required, expected) in DEFAULTS.items():
        args = build_parser().parse_args(command.split() + required)
        for want in expected:
            flagged = {f.name for f in dataclasses.fields(want)} & set(vars(args))
            assert flagged, f"{command}: no flag of {type(want).__name__}"
            unflagged = {f.name: getattr(want, f.name) for f in dataclasses.fields(want) if f.name not in flagged}
            assert from_args(type(want), args, **unflagged) == want, command


def test_train_flags_keep_their_names_and_switches():
    parse = lambda *flags: from_args(TrainConfig, build_parser().parse_args(["train", "--dataset_dir", "d", *flags]))  # noqa: E731
    cfg = parse("--no_baseline", "--no_threshold_tuning", "--no-warmup", "--bf16", "--pos_weight", "auto",
                "--loss", "focal", "--pooling", "cls", "--early_stop", "--few_shot", "--batch_size", "8")
    assert (cfg.baseline, cfg.threshold_tuning, cfg.warmup, cfg.bf16, cfg.pos_weight, cfg.loss, cfg.pooling,
            cfg.early_stop, cfg.few_shot, cfg.batch_size) == (False, False, False, True, "auto", "focal", "cls",
                                                              True, True, 8)
    assert parse("--no-bf16").bf16 is False and parse("--warmup").warmup is True
    prune = from_args(PruneConfig, build_parser().parse_args(
        ["prune", "--dataset_dir", "d", "--params_dir", "c", "--per_device_train_batch_size", "4",
         "--num_train_epochs", "2", "--width_mult_list", "1/2"]))
    assert (prune.params_path, prune.batch_size, prune.epochs, prune.width_mult_list) == ("c", 4, 2, ["1/2"])
    for flags in (["--loss", "hinge"], ["--pooling", "max"], ["--pos_weight", "2"], ["--head_prior"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "--dataset_dir", "d", *flags])


def test_every_help_renders(capsys):
    for words, _ in leaf_commands(build_parser()):
        with pytest.raises(SystemExit) as exit_:
            main([*words, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: labelwise {' '.join(words)}") and "--" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "zeroshot" in capsys.readouterr().out


def test_bad_config_values_are_one_line_naming_the_flag(capsys):
    assert main(["-q", "train", "--dataset_dir", "d", "--warmup_proportion", "2"]) == 2
    assert capsys.readouterr().err.strip() == "labelwise: error: --warmup_proportion must be at most 1, got 2.0"
    assert main(["-q", "prune", "--dataset_dir", "d", "--num_train_epochs", "0"]) == 2
    assert "--epochs must be at least 1, got 0" in capsys.readouterr().err


def test_evaluate_bounds_the_labels_per_text(untrained_zh_checkpoint, divorce_small, tmp_path, capsys):
    bad_case = tmp_path / "bad_case.txt"
    assert main(["-q", "evaluate", "--dataset_dir", str(divorce_small), "--params_path", str(untrained_zh_checkpoint),
                 "--bad_case_file", str(bad_case), "--threshold", "0.99", "--top_k_min", "2", "--top_k_max", "2",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 80
    rows = [line.split("\t") for line in bad_case.read_text(encoding="utf-8").splitlines()[1:]]
    assert rows and all(len(row[2].split(",")) == 2 for row in rows)  # at 0.99 alone: none, or next to none
