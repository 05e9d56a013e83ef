"""The stopping signal of `labelwise select`: successive models' decisions on the pool, compared round by round."""
from __future__ import annotations

import numpy as np
import pytest

from labelwise.cli.main import main
from labelwise.errors import LabelwiseError
from labelwise.select.stopping import KAPPA_STOP, STABLE_ROUNDS, cohen_kappa, record_round


def test_cohen_kappa_is_one_for_agreement_and_near_zero_for_chance():
    rng = np.random.default_rng(0)
    a = rng.random((2000, 5)) < 0.3
    assert cohen_kappa(a, a) == 1.0
    assert abs(cohen_kappa(a, rng.random((2000, 5)) < 0.3)) < 0.05
    assert cohen_kappa(a, ~a) < -0.5


def test_rounds_count_stable_kappas_and_the_signal_says_stop_after_three(tmp_path):
    path, labels = tmp_path / "h.npz", ["a", "b", "c"]
    texts = [f"text {i}" for i in range(300)]
    rng = np.random.default_rng(1)
    decisions = rng.random((300, 3)) < 0.4
    first = record_round(path, texts, decisions, labels)
    assert first.round == 1 and first.kappa is None and not first.stop
    changed = decisions.copy()
    changed[:60] = ~changed[:60]  # a model that still changes its mind on a fifth of the pool
    second = record_round(path, texts, changed, labels)
    assert second.round == 2 and second.compared == 300 and second.kappa < 0.8 and second.stable_rounds == 0
    assert second.agreement == pytest.approx(0.8, abs=0.01) and "keep annotating" in second.message()
    signals = [record_round(path, texts[10:], changed[10:], labels) for _ in range(STABLE_ROUNDS)]  # labelled: gone
    assert [s.stable_rounds for s in signals] == [1, 2, 3] and signals[-1].kappa >= KAPPA_STOP
    assert signals[-1].stop and "stopped changing" in signals[-1].message() and signals[-1].compared == 290
    assert not record_round(path, texts, decisions, labels).stop  # a change resets the count


def test_a_history_of_other_labels_or_a_damaged_one_is_one_line(tmp_path):
    path = tmp_path / "h.npz"
    record_round(path, ["x", "y"], np.array([[1, 0], [0, 1]], bool), ["a", "b"])
    with pytest.raises(LabelwiseError, match="other labels"):
        record_round(path, ["x", "y"], np.array([[1, 0, 0], [0, 1, 0]], bool), ["a", "b", "c"])
    path.write_bytes(b"not a numpy file")
    with pytest.raises(LabelwiseError, match="cannot be read.*delete it"):
        record_round(path, ["x"], np.array([[1, 0]], bool), ["a", "b"])


def test_select_prints_the_signal_each_round(tiny_zh_checkpoint, divorce_small, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(divorce_small, data)
    command = ["select", "--params_path", str(tiny_zh_checkpoint), "--dataset_dir", str(data), "--num", "3",
               "--overwrite"]
    assert main([*command, "--output_file", str(tmp_path / "r1.jsonl")]) == 0
    assert "round 1" in capsys.readouterr().out and (data / "select_history.npz").is_file()
    assert main([*command, "--output_file", str(tmp_path / "r2.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "kappa 1.000" in out and "rounds in a row at kappa >= 0.99: 1 of 3" in out  # the same model twice
    assert main([*command, "--output_file", str(tmp_path / "r3.jsonl"), "--history_file", "none"]) == 0
    assert "stopping signal" not in capsys.readouterr().out
