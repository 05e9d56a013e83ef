"""The command line end to end: train → evaluate → predict, output files, and one-line errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from labelwise.cli.main import main


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labelwise", *args], capture_output=True, text=True, timeout=300,
                          env=env)


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

    assert main(["-q", "predict", "--dataset_dir", str(divorce_small), "--params_path", str(ckpt), "--perf"]) == 0
    assert "ms/sample" in capsys.readouterr().out


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


def test_bad_data_line_is_reported_with_its_number(tmp_path, divorce_small):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("label.txt", "dev.txt"):
        (bad / name).write_text((divorce_small / name).read_text(encoding="utf-8"), encoding="utf-8")
    (bad / "train.txt").write_text("婚生子由原告抚养\t婚后有子女\n第二行没有制表符\n", encoding="utf-8")
    run = run_cli("train", "--dataset_dir", str(bad))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{bad / 'train.txt'}:2: no tab between text and labels" in run.stderr


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
