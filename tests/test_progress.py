"""Progress output: a log file gets a few readable lines, not hundreds of carriage-return redraws."""
from __future__ import annotations

import io
import logging

from labelwise.progress import LineProgress, progress


def test_line_progress_prints_every_tenth_with_postfix():
    out = io.StringIO()
    bar = LineProgress(list(range(200)), "epoch 1/3", stream=out)
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(loss="0.1234")
    lines = out.getvalue().splitlines()
    assert seen == list(range(200)) and "\r" not in out.getvalue()
    assert len(lines) == 10 and lines[0].startswith("epoch 1/3: 20/200 (10%)") and lines[-1].startswith(
        "epoch 1/3: 200/200 (100%)")
    assert all("ETA" in line and "loss=0.1234" in line for line in lines[1:])


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(capsys):
    items = progress(range(5), "predict", total=5)  # pytest captures stderr: not a terminal
    assert isinstance(items, LineProgress) and list(items) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err.count("predict:") == 5
    assert progress([1, 2], "x", enabled=False) == [1, 2]


def test_training_log_has_no_carriage_returns(tmp_path, tiny_zh_encoder, divorce_small, capfd, caplog):
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    caplog.set_level(logging.INFO, logger="labelwise")
    train(TrainConfig(dataset_dir=str(divorce_small), save_dir=str(tmp_path / "ck"), model_name=str(tiny_zh_encoder),
                      epochs=1, learning_rate=1e-3, max_train_samples=64, max_dev_samples=16, batch_size=16,
                      max_seq_length=32, long_text="truncate", baseline=False))
    err = capfd.readouterr().err
    assert "\r" not in err and "epoch 1/1: 4/4 (100%)" in err
