"""Training loop: losses, resume after a crash, init_from_ckpt, early stop, DDP with two CPU processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from labelwise import training
from labelwise.errors import LabelwiseError
from labelwise.losses import MultiLabelLoss, auto_pos_weight
from labelwise.training import TrainConfig, train

from conftest import DIVORCE, make_subset


def tiny_config(encoder, dataset, save_dir, **overrides) -> TrainConfig:
    options = dict(dataset_dir=str(dataset), save_dir=str(save_dir), model_name=str(encoder), epochs=2,
                   learning_rate=3e-3, batch_size=16, max_seq_length=48, progress=False)
    options.update(overrides)
    return TrainConfig(**options)


@pytest.mark.parametrize("kind", ["bce", "focal", "asymmetric"])
def test_losses_fall_when_logits_move_towards_targets(kind):
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    loss = MultiLabelLoss(kind, pos_weight=torch.tensor([1.0, 2.0, 3.0]))
    wrong = loss(-3 * (2 * targets - 1), targets)
    unsure = loss(torch.zeros_like(targets), targets)
    right = loss(3 * (2 * targets - 1), targets)
    assert wrong > unsure > right >= 0


def test_auto_pos_weight_is_neg_over_pos_clipped():
    y = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 1]], dtype=np.float32)
    assert auto_pos_weight(y, max_weight=50).tolist() == [3.0, 3.0, 1.0]


def test_bad_config_is_a_clear_error(tiny_zh_encoder, divorce_small, tmp_path):
    with pytest.raises(LabelwiseError, match="--batch_size must be positive"):
        train(tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "c", batch_size=0))


def test_resume_continues_after_the_last_finished_epoch(tiny_zh_encoder, divorce_small, tmp_path, monkeypatch):
    save = tmp_path / "ckpt"
    cfg = tiny_config(tiny_zh_encoder, divorce_small, save, epochs=3, max_train_samples=64, max_dev_samples=32)
    real_evaluate = training._evaluate
    calls = []

    def crash_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed while evaluating epoch 2
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "_evaluate", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    state = json.loads((tmp_path / "ckpt.train_state" / "state.json").read_text())
    assert state["epoch"] == 1 and (save / "head.safetensors").exists()  # best so far is safe on disk

    monkeypatch.setattr(training, "_evaluate", real_evaluate)
    cfg.resume = True
    result = train(cfg)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[0] == state["history"][0]  # epoch 1 was not redone
    assert not (tmp_path / "ckpt.train_state").exists()


def test_init_from_ckpt_needs_the_same_labels(tiny_zh_checkpoint, tmp_path):
    other = make_subset(DIVORCE, tmp_path / "other", 20, 10)
    (other / "label.txt").write_text("婚后有子女\n支付抚养费\n", encoding="utf-8")
    (other / "train.txt").write_text("婚生子由原告抚养\t婚后有子女\n", encoding="utf-8")
    (other / "dev.txt").write_text("婚生子由原告抚养\t婚后有子女\n", encoding="utf-8")
    with pytest.raises(LabelwiseError, match="labels differ"):
        train(TrainConfig(dataset_dir=str(other), save_dir=str(tmp_path / "c"),
                          init_from_ckpt=str(tiny_zh_checkpoint), progress=False))


def test_init_from_ckpt_starts_from_its_weights(tiny_zh_checkpoint, divorce_small, tmp_path):
    result = train(TrainConfig(dataset_dir=str(divorce_small), save_dir=str(tmp_path / "c"), epochs=1,
                               learning_rate=1e-9, init_from_ckpt=str(tiny_zh_checkpoint), progress=False,
                               max_seq_length=64))
    before = json.loads((tiny_zh_checkpoint / "labelwise.json").read_text())["metrics"]["dev@0.5"]
    after = result.metrics["dev@0.5"]
    assert after["micro_f1"] == pytest.approx(before["micro_f1"], abs=0.5)  # lr≈0: the same model


def test_early_stop_stops(tiny_zh_encoder, divorce_small, tmp_path):
    result = train(tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "c", epochs=30, learning_rate=1e-9,
                               early_stop=True, early_stop_nums=2, max_train_samples=32, max_dev_samples=16))
    assert len(result.history) == 3  # best at epoch 1, then two epochs without gain


def test_imbalance_options_train(tiny_zh_encoder, divorce_small, tmp_path):
    result = train(tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "c", epochs=1, loss="focal",
                               pos_weight="auto", max_train_samples=64, max_dev_samples=32))
    meta = json.loads((tmp_path / "c" / "labelwise.json").read_text())
    assert meta["training_args"]["loss"] == "focal" and meta["training_args"]["pos_weight"] == "auto"
    assert np.isfinite(result.history[0]["loss"])


def test_ddp_two_cpu_processes(tiny_zh_encoder, divorce_small, tmp_path):
    save = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "labelwise", "-q", "train", "--dataset_dir", str(divorce_small), "--save_dir", str(save),
           "--model_name", str(tiny_zh_encoder), "--epochs", "1", "--batch_size", "16", "--max_seq_length", "32",
           "--max_train_samples", "96", "--max_dev_samples", "32", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = json.loads((save / "labelwise.json").read_text())
    assert len(meta["thresholds"]) == 20 and meta["metrics"]["dev@0.5"]["micro_f1"] >= 0
    assert not (tmp_path / "ddp.train_state").exists()
