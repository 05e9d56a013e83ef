"""--report_to tensorboard | mlflow: the runs written by `labelwise train`, read back with the real libraries."""
from __future__ import annotations

import pytest

from labelwise.cli.main import main


def train(tiny_zh_encoder, divorce_small, save_dir, *extra: str) -> None:
    assert main(["train", "--dataset_dir", str(divorce_small), "--save_dir", str(save_dir), "--model_name",
                 str(tiny_zh_encoder), "--epochs", "2", "--max_seq_length", "16", "--max_train_samples", "64",
                 "--batch_size", "16", "--logging_steps", "2", "--no_baseline", *extra]) == 0


def test_tensorboard_run_holds_steps_epochs_labels_and_the_config(tiny_zh_encoder, divorce_small, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_zh_encoder, divorce_small, tmp_path / "ckpt", "--report_to", "tensorboard")
    events = EventAccumulator(str(tmp_path / "ckpt_logs"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == list(range(2, 2 * len(steps) + 1, 2)) and len(steps) >= 4  # 64 texts / 16 × 2 epochs, every 2
    assert len(events.Scalars("train/learning_rate")) == len(steps)
    assert [e.step for e in events.Scalars("dev/macro_f1")] == [1, 2]
    assert sum(t.startswith("dev_f1/") for t in tags["scalars"]) == 20  # every label
    text = {t for t in tags["tensors"]}
    assert {"config/text_summary", "thresholds/text_summary", "model_card/text_summary"} <= text


def test_mlflow_run_holds_metrics_params_and_artifacts(tiny_zh_encoder, divorce_small, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train(tiny_zh_encoder, divorce_small, tmp_path / "ckpt", "--report_to", "mlflow", "--logging_dir",
          str(tmp_path / "logs"))
    from labelwise.training.tracking import mlflow_uri

    client = MlflowClient(tracking_uri=mlflow_uri(tmp_path / "logs"))
    experiment = client.get_experiment_by_name(divorce_small.name)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "ckpt" and run.data.params["epochs"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev/macro_f1")] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 4
    assert sum(k.startswith("dev_f1/") for k in run.data.metrics) == 20
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"README.md", "labelwise.json", "thresholds.json"} <= artifacts


def test_few_shot_tracks_its_contrastive_stage_apart_from_fine_tuning(tiny_zh_encoder, divorce_small, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_zh_encoder, divorce_small, tmp_path / "fs", "--few_shot", "--report_to", "tensorboard")
    events = EventAccumulator(str(tmp_path / "fs_logs"), size_guidance={"scalars": 0})
    events.Reload()
    pairs = [e.value for e in events.Scalars("contrastive/loss")]
    assert len(pairs) >= 2 and all(v >= 0 for v in pairs)  # MSE of cosine vs target, every 2 pair batches
    assert len(events.Scalars("contrastive/learning_rate")) == len(pairs)
    assert len(events.Scalars("train/loss")) >= 2 and [e.step for e in events.Scalars("dev/macro_f1")][:1] == [1]
