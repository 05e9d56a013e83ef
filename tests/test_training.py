"""Training loop: losses, resume after a crash, init_from_ckpt, early stop, DDP with two CPU processes."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import DIVORCE, make_subset
from labelwise.cli.main import main
from labelwise.data.dataset import load_dataset, multi_hot
from labelwise.errors import LabelwiseError
from labelwise.evaluation.metrics import evaluate_predictions
from labelwise.predict.classifier import Classifier
from labelwise.training import finetune as training
from labelwise.training.config import TrainConfig
from labelwise.training.finetune import train
from labelwise.training.losses import MultiLabelLoss, auto_pos_weight
from labelwise.training.resume import load_state, restore_random_states, save_state
from labelwise.training.scoring import evaluate_model


def tiny_config(encoder, dataset, save_dir, **overrides) -> TrainConfig:
    options = dict(dataset_dir=str(dataset), save_dir=str(save_dir), model_name=str(encoder), epochs=2,
                   learning_rate=3e-3, batch_size=16, max_seq_length=48, long_text="truncate", progress=False)
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
    with pytest.raises(LabelwiseError, match="`batch_size` must be at least 1, got 0"):
        train(tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "c", batch_size=0))


def crash_when_scoring(epoch: int):
    """An evaluate_model that raises KeyboardInterrupt (the process is killed) while it scores ``epoch`` on dev."""
    calls = []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return evaluate_model(*args, **kwargs)

    return evaluate


@pytest.mark.parametrize("empty", [["dev.txt"], ["train.txt", "dev.txt"]])
def test_an_empty_split_is_named_by_its_file(tiny_zh_encoder, divorce_small, tmp_path, capsys, empty):
    data = make_subset(divorce_small, tmp_path / "data", 20, 10)
    for name in empty:
        (data / name).write_text("", encoding="utf-8")
    with pytest.raises(LabelwiseError) as err:
        train(tiny_config(tiny_zh_encoder, data, tmp_path / "c"))
    named = [name for name in ("train.txt", "dev.txt") if str(data / name) in str(err.value)]
    assert named == empty and "no examples" in str(err.value)
    assert main(["-q", "train", "--dataset_dir", str(data), "--model_name", str(tiny_zh_encoder),
                 "--save_dir", str(tmp_path / "c")]) == 2
    message = capsys.readouterr().err.strip()
    assert str(data / empty[-1]) in message and "\n" not in message and not (tmp_path / "c").exists()


def test_resume_continues_after_the_last_finished_epoch(tiny_zh_encoder, divorce_small, tmp_path, monkeypatch):
    save = tmp_path / "ckpt"
    cfg = tiny_config(tiny_zh_encoder, divorce_small, save, epochs=3, max_train_samples=64, max_dev_samples=32)
    monkeypatch.setattr(training, "evaluate_model", crash_when_scoring(epoch=2))
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    state = json.loads((tmp_path / "ckpt.train_state" / "state.json").read_text())
    assert state["epoch"] == 1 and (save / "head.safetensors").exists()  # best so far is safe on disk

    monkeypatch.undo()
    result = train(dataclasses.replace(cfg, resume=True))
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[0] == state["history"][0]  # epoch 1 was not redone
    assert not (tmp_path / "ckpt.train_state").exists()


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tiny_zh_encoder, divorce_small, tmp_path,
                                                                    monkeypatch):
    cfg = tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "whole", epochs=3, max_train_samples=64,
                      max_dev_samples=32)
    whole = train(cfg)
    monkeypatch.setattr(training, "evaluate_model", crash_when_scoring(epoch=2))
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 2's steps: the state holds epoch 1
        train(dataclasses.replace(cfg, save_dir=str(tmp_path / "killed")))
    monkeypatch.undo()
    resumed = train(dataclasses.replace(cfg, save_dir=str(tmp_path / "killed"), resume=True))

    assert resumed.history == whole.history  # the same training losses and dev scores, to the last bit
    assert resumed.best_epoch == whole.best_epoch and timeless(resumed.metrics) == timeless(whole.metrics)
    weights = resumed.classifier.backend.model.state_dict()
    for name, value in whole.classifier.backend.model.state_dict().items():
        assert torch.equal(weights[name], value), name
    for name in ("encoder/model.safetensors", "head.safetensors"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    whole_meta, killed_meta = (json.loads((tmp_path / run / "labelwise.json").read_text()) for run in ("whole", "killed"))
    assert killed_meta["thresholds"] == whole_meta["thresholds"]
    assert timeless(killed_meta["metrics"]) == timeless(whole_meta["metrics"])


def timeless(metrics: dict) -> dict:
    """The metrics without the baseline's fitting time (a clock reading, different in every run)."""
    return {**metrics, "baseline": {k: v for k, v in metrics["baseline"].items() if k != "fit_seconds"}}


def test_resume_state_restores_every_random_state_and_warns_about_another_data_order(tmp_path, caplog):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    order = {"seed": 3, "batch_size": 16, "examples": "abc"}
    save_state(tmp_path / "state", model, optimizer, scheduler, {"epoch": 1}, order)
    drawn = random.random(), np.random.rand(), torch.rand(3)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)  # something in between draws from every generator

    state = load_state(tmp_path / "state", model, optimizer, scheduler, order, "cpu")
    restore_random_states(state["random"])
    again = random.random(), np.random.rand(), torch.rand(3)
    assert again[:2] == drawn[:2] and torch.equal(again[2], drawn[2]) and state["epoch"] == 1
    assert "data order" not in caplog.text

    with caplog.at_level("WARNING", logger="labelwise"):
        load_state(tmp_path / "state", model, optimizer, scheduler, {**order, "batch_size": 32}, "cpu")
    assert "other batch_size" in caplog.text and "data order" in caplog.text


def test_resume_state_is_not_rewritten_after_every_short_epoch(tiny_zh_encoder, divorce_small, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "ckpt", epochs=3, max_train_samples=32,
                      max_dev_samples=16)
    monkeypatch.setattr(training, "evaluate_model", crash_when_scoring(epoch=3))
    monkeypatch.setattr(training, "STATE_INTERVAL_SECONDS", 3600.0)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert json.loads((tmp_path / "ckpt.train_state" / "state.json").read_text())["epoch"] == 1  # epoch 2 not saved

    monkeypatch.setattr(training, "STATE_INTERVAL_SECONDS", 0.0)
    monkeypatch.setattr(training, "evaluate_model", crash_when_scoring(epoch=3))
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert json.loads((tmp_path / "ckpt.train_state" / "state.json").read_text())["epoch"] == 2


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
                               max_seq_length=64, long_text="truncate"))
    before = json.loads((tiny_zh_checkpoint / "labelwise.json").read_text())["metrics"]["dev@0.5"]
    after = result.metrics["dev@0.5"]
    assert after["micro_f1"] == pytest.approx(before["micro_f1"], abs=0.5)  # lr≈0: the same model


def test_early_stop_stops(tiny_zh_encoder, divorce_small, tmp_path):
    result = train(tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "c", epochs=30, learning_rate=1e-9,
                               early_stop=True, early_stop_nums=2, max_train_samples=32, max_dev_samples=16))
    assert len(result.history) == 3  # best at epoch 1, then two epochs without gain


def test_loss_and_pos_weight_change_training(tiny_zh_encoder, divorce_small, tmp_path, monkeypatch):
    data = make_subset(divorce_small, tmp_path / "data", 64, 32)
    ds = load_dataset(data)
    built = []

    class RecordedLoss(MultiLabelLoss):  # the loss the training loop really builds
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(training, "MultiLabelLoss", RecordedLoss)

    def run(name, **options):
        result = train(tiny_config(tiny_zh_encoder, data, tmp_path / name, epochs=1, seed=7, baseline=False,
                                   **options))
        meta = json.loads((tmp_path / name / "labelwise.json").read_text())
        head = load_file(tmp_path / name / "head.safetensors")["weight"]
        mean_prob = float(Classifier.load(tmp_path / name).predict_proba([e.text for e in ds.dev]).mean())
        return result.history[0]["loss"], head, mean_prob, meta["training_args"], built[-1]

    bce, bce_head, bce_prob, bce_args, bce_fn = run("bce")
    again, again_head, again_prob, _, _ = run("again")
    focal, focal_head, _, focal_args, focal_fn = run("focal", loss="focal")
    weighted, weighted_head, weighted_prob, weighted_args, weighted_fn = run("weighted", pos_weight="auto")
    both, both_head, _, both_args, both_fn = run("both", loss="focal", pos_weight="auto")

    # the options reach the checkpoint and the loss the loop uses
    assert (bce_args["loss"], bce_args["pos_weight"]) == ("bce", None)
    assert (focal_args["loss"], focal_args["pos_weight"]) == ("focal", None)
    assert (weighted_args["loss"], weighted_args["pos_weight"]) == ("bce", "auto")
    assert both_args["loss"] == "focal" and both_args["pos_weight"] == "auto"
    assert (bce_fn.kind, focal_fn.kind, weighted_fn.kind, both_fn.kind) == ("bce", "focal", "bce", "focal")
    assert bce_fn.pos_weight is None and focal_fn.pos_weight is None
    y_train = multi_hot(ds.train, ds.labels)
    assert y_train.shape == (64, 20)
    for fn in (weighted_fn, both_fn):
        np.testing.assert_array_equal(fn.pos_weight.cpu().numpy(), auto_pos_weight(y_train))
    assert all(np.isfinite(loss) for loss in (bce, focal, weighted, both))

    # same seed, same options: the same run, so every difference below comes from --loss / --pos_weight
    assert again == pytest.approx(bce, rel=1e-5) and again_prob == pytest.approx(bce_prob, rel=1e-5)
    torch.testing.assert_close(again_head, bce_head, rtol=0, atol=1e-5)
    # focal down-weights the easy (mostly negative) cases; weighting the rare positives up raises the loss
    assert focal < 0.7 * bce and weighted > 3 * bce and bce < both < weighted
    for head in (focal_head, weighted_head, both_head):
        assert (head - bce_head).abs().max() > 0.05  # the head learnt something else
    # weighting the positives up pushes the predicted probabilities up
    assert weighted_prob > bce_prob


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it), for torchrun's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two torchrun worker processes
def test_ddp_two_cpu_processes(tiny_zh_encoder, divorce_small, tmp_path):
    data = make_subset(divorce_small, tmp_path / "data", 300, 32)  # all 300 train lines, the first 32 dev lines
    save = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()),
           "-m", "labelwise", "-q", "train", "--dataset_dir", str(data), "--save_dir", str(save),
           "--model_name", str(tiny_zh_encoder), "--epochs", "1", "--batch_size", "16", "--max_seq_length", "32",
           "--max_train_samples", "96", "--max_dev_samples", "32", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = json.loads((save / "labelwise.json").read_text())
    assert len(meta["thresholds"]) == 20
    assert not (tmp_path / "ddp.train_state").exists()

    # rank 0 saved the model both workers trained and scored: reloaded, it gives the recorded dev metrics
    dev = load_dataset(data).dev
    y_dev = multi_hot(dev, meta["labels"])
    probs = Classifier.load(save).predict_proba([e.text for e in dev])
    assert probs.shape == (32, 20) and np.all((probs > 0) & (probs < 1))
    at_half = evaluate_predictions(y_dev, probs, meta["labels"], 0.5)
    tuned = evaluate_predictions(y_dev, probs, meta["labels"], meta["thresholds"])
    recorded = meta["metrics"]
    assert at_half["micro"]["f1"] == pytest.approx(recorded["dev@0.5"]["micro_f1"], abs=1e-6)
    assert at_half["macro"]["f1"] == pytest.approx(recorded["dev@0.5"]["macro_f1"], abs=1e-6)
    assert tuned["micro"]["f1"] == pytest.approx(recorded["dev@tuned"]["micro_f1"], abs=1e-6)
    # the tuned thresholds never lose on the dev data they were fit on, and find the frequent labels: the same
    # recipe in one process (batches of 32, seeds 3-5) scored 44.0 (dev@0.5: 34.9); a broken model scores ~0
    assert tuned["micro"]["f1"] + tuned["macro"]["f1"] >= at_half["micro"]["f1"] + at_half["macro"]["f1"]
    assert recorded["dev@tuned"]["micro_f1"] > 30


# ---- the default recipe ----------------------------------------------------------------------------------
def test_defaults_follow_encoder_width_and_dataset_size():
    assert training.auto_learning_rate(512) == 1e-4 and training.auto_learning_rate(768) == 3e-5
    assert training.auto_epochs(450) == 3  # divorce: 14,377 examples / 32
    assert training.auto_epochs(63) == 10  # 2,000 examples: at least 600 steps
    assert training.auto_epochs(1) == 40 and training.auto_epochs(10_000) == 3


def test_auto_pooling_is_mean_for_sentence_encoders_and_cls_otherwise(tiny_zh_encoder):
    from labelwise.model.encoders import resolve_model_name, resolve_pooling

    assert resolve_pooling("auto", resolve_model_name("m3e-small")) == "mean"  # uniem_embedding_strategy
    assert resolve_pooling("auto", resolve_model_name("all-minilm-l6-v2")) == "mean"  # sentence-transformers
    assert resolve_pooling("auto", str(tiny_zh_encoder)) == "cls"  # a plain BERT folder
    assert resolve_pooling("cls", resolve_model_name("m3e-small")) == "cls"  # an explicit choice wins
    with pytest.raises(LabelwiseError, match="pooling"):
        resolve_pooling("max", str(tiny_zh_encoder))


def test_head_starts_at_the_label_priors():
    from labelwise.model.network import prior_logits

    y = np.zeros((100, 3), dtype=np.float32)
    y[:50, 0], y[:1, 1] = 1, 1
    bias = prior_logits(y).numpy()
    assert abs(bias[0]) < 1e-6 and -5.5 < bias[1] < -4.0 and bias[2] < bias[1]
    assert np.allclose(1 / (1 + np.exp(-bias)), [0.5, 1.5 / 101, 0.5 / 101], atol=1e-6)


def test_checkpoint_records_the_resolved_recipe_and_the_baseline(tiny_zh_checkpoint):
    meta = json.loads((tiny_zh_checkpoint / "labelwise.json").read_text(encoding="utf-8"))
    args = meta["training_args"]
    assert args["learning_rate"] == 3e-3 and args["head_learning_rate"] == pytest.approx(30 * 3e-3)
    assert args["epochs"] == 3 and args["pooling"] == meta["pooling"] == "cls" and args["warmup"] is True
    baseline = meta["metrics"]["baseline"]
    assert baseline["model"].startswith("TF-IDF character 1-3-grams")
    assert 40 < baseline["dev@0.5"]["micro_f1"] <= 100  # the linear model learns divorce_small


def test_explicit_flags_win_over_the_automatic_defaults(tmp_path, tiny_zh_encoder, divorce_small):
    result = train(tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "ck", epochs=1, learning_rate=2e-3,
                               head_learning_rate=5e-3, pooling="mean", max_train_samples=32, baseline=False))
    meta = json.loads((result.save_dir / "labelwise.json").read_text(encoding="utf-8"))
    args = meta["training_args"]
    assert (args["epochs"], args["learning_rate"], args["head_learning_rate"], meta["pooling"]) == (1, 2e-3, 5e-3, "mean")
    assert "baseline" not in meta["metrics"] and len(result.history) == 1


def test_linear_baseline_uses_character_ngrams_for_chinese_and_words_otherwise(divorce_small, goemotions_small):
    from labelwise.data.dataset import load_dataset, multi_hot
    from labelwise.training.baseline import LinearBaseline, is_cjk

    assert is_cjk(["婚生子杨某甲由原告抚养"]) and not is_cjk(["I am so happy for you"]) and not is_cjk([])
    for folder, analyzer in ((divorce_small, "char"), (goemotions_small, "word")):
        ds = load_dataset(folder)
        base = LinearBaseline().fit([e.text for e in ds.train], multi_hot(ds.train, ds.labels))
        assert base.analyzer_ == analyzer
        y_train = multi_hot(ds.train, ds.labels)
        fitted = base.predict([e.text for e in ds.train])
        assert f1_micro(y_train, fitted) > 80  # separable on its own training data
        assert base.decision_function(["x"]).shape == (1, len(ds.labels))


def f1_micro(y, predicted) -> float:
    from labelwise.evaluation.metrics import f1_scores

    return f1_scores(y, predicted)[0]


def test_bf16_autocast_trains_and_falls_back_to_fp32_where_unsupported(tiny_zh_encoder, divorce_small, tmp_path,
                                                                        monkeypatch, caplog):
    seen = []
    real_autocast = torch.autocast

    def recording_autocast(device_type, dtype=None, enabled=True):
        seen.append(enabled)
        return real_autocast(device_type, dtype=dtype, enabled=enabled)

    monkeypatch.setattr(training.torch, "autocast", recording_autocast)
    monkeypatch.setattr(training, "bf16_supported", lambda device: True)
    cfg = tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "bf16", epochs=3, bf16=True, max_train_samples=64,
                      max_dev_samples=32)
    result = train(cfg)
    assert seen == [True] and result.history[-1]["loss"] < result.history[0]["loss"]  # it learns in bf16
    assert all(p.dtype == torch.float32 for p in result.classifier.backend.model.parameters())  # weights stay fp32

    monkeypatch.setattr(training, "bf16_supported", lambda device: False)
    with caplog.at_level("WARNING", logger="labelwise"):
        train(tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "fp32", epochs=1, bf16=True,
                          max_train_samples=32, max_dev_samples=16))
    assert seen[-1] is False and "no bfloat16 support; training in fp32" in caplog.text


@pytest.mark.parametrize("flags, device, expected", [
    ({"avx2"}, "cpu", False),                                      # AMD EPYC seen here: no bf16 at all
    ({"avx512_bf16", "avx512_vnni"}, "cpu", False),                # bf16 instructions but no AMX: measured slower
    ({"avx512_bf16", "amx_bf16", "amx_tile"}, "cpu", True),        # AMX: measured 1.4-1.5x faster
    ({"avx512_bf16", "amx_bf16", "amx_tile"}, "cuda:0", False),    # the GPU measured slower
    (None, "cpu", False),                                          # flags unreadable: stay fp32
])
def test_bf16_default_is_on_only_where_measured_faster(monkeypatch, flags, device, expected):
    from labelwise.model import device as devices

    monkeypatch.setattr(devices, "_cpu_flags", lambda: flags)
    assert devices.bf16_auto(device) is expected


def test_bf16_default_follows_the_cpu_and_is_recorded(tiny_zh_encoder, divorce_small, tmp_path, monkeypatch, caplog):
    seen = []
    real_autocast = torch.autocast
    monkeypatch.setattr(training.torch, "autocast",
                        lambda device_type, dtype=None, enabled=True: seen.append(enabled) or
                        real_autocast(device_type, dtype=dtype, enabled=enabled))
    monkeypatch.setattr(training, "bf16_auto", lambda device: True)
    with caplog.at_level("INFO", logger="labelwise"):
        result = train(tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "auto", epochs=1, max_train_samples=32,
                                   max_dev_samples=16))
    assert seen == [True] and "bf16 autocast on" in caplog.text
    meta = json.loads((tmp_path / "auto" / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["training_args"]["bf16"] is True  # what ran, not "auto"
    train(tiny_config(tiny_zh_encoder, divorce_small, tmp_path / "off", epochs=1, bf16=False, max_train_samples=32,
                      max_dev_samples=16))
    assert seen[-1] is False  # an explicit --no-bf16 wins over the CPU
