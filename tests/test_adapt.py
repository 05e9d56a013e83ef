"""``labelwise adapt``: an encoder trained further on unlabelled texts; its losses on held-back pool texts fall, the
folder loads with plain transformers and trains a classifier; dev and test texts never enter the pool."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelwise.cli.main import main
from labelwise.training.adapt import AdaptConfig, Objective, adapt

FAST = {"max_seq_length": 32, "batch_size": 16, "learning_rate": 1e-3, "epochs": 2, "held_out": 0.2}


def pool_file(divorce_small: Path, path: Path, n: int = 240) -> Path:
    lines = (divorce_small / "train.txt").read_text(encoding="utf-8").splitlines()[:n]
    path.write_text("".join(line.split("\t")[0] + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("objective", ["mlm", "contrastive"])
def test_the_objectives_loss_falls_on_held_back_pool_texts(objective, tiny_zh_encoder, divorce_small, tmp_path):
    result = adapt(AdaptConfig(pool_file=str(pool_file(divorce_small, tmp_path / "pool.txt")), objective=objective,
                               model_name=str(tiny_zh_encoder), save_dir=str(tmp_path / "adapted"), **FAST))
    losses = result.info["held_out_loss"]
    assert result.info["held_out"] == 48 and result.info["texts"] == 192
    assert losses["after"][objective] < losses["before"][objective] - 0.05, losses
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(result.folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]  # the encoder alone, no MLM head left
    assert not any(name.startswith("cls.") for name, _ in model.named_parameters())
    saved = json.loads((result.folder / "adapt.json").read_text(encoding="utf-8"))
    assert saved["objective"] == objective and saved["steps"] == 24
    assert not Path(f"{result.folder}.adapt_state").exists()  # the resume state is gone once the folder is complete


def test_adapt_and_train_on_it_through_the_cli_and_train_adapt_pool(tiny_zh_encoder, divorce_small, tmp_path, capsys):
    pool = pool_file(divorce_small, tmp_path / "pool.txt")
    assert main(["adapt", "--pool_file", str(pool), "--model_name", str(tiny_zh_encoder), "--save_dir",
                 str(tmp_path / "adapted"), "--objective", "both", "--max_seq_length", "32", "--max_steps", "3"]) == 0
    assert "train on it with --model_name" in capsys.readouterr().out
    fast = ["--epochs", "1", "--max_seq_length", "32", "--batch_size", "16", "--no_baseline"]
    assert main(["train", "--dataset_dir", str(divorce_small), "--save_dir", str(tmp_path / "c1"), "--model_name",
                 str(tmp_path / "adapted"), *fast]) == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "c1" / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["base_model"] == str(tmp_path / "adapted")
    # one command: adapt on the pool, then fine-tune from the adapted encoder
    assert main(["train", "--dataset_dir", str(divorce_small), "--save_dir", str(tmp_path / "c2"), "--model_name",
                 str(tiny_zh_encoder), "--adapt_pool", str(pool), *fast]) == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "c2" / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["base_model"] == str(tmp_path / "c2.adapted")
    assert meta["choices"]["adapt"]["objective"] == "contrastive"
    assert meta["choices"]["adapt"]["texts"] > 0 and (tmp_path / "c2.adapted" / "adapt.json").is_file()


def test_dev_and_test_texts_never_enter_the_pool(tiny_zh_encoder, divorce_small, tmp_path, caplog):
    from labelwise.training.adapt import read_pool

    dev = [line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()]
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(dev[:30] + ["一段新的文字。", "另一段文字。"]) + "\n", encoding="utf-8")
    with caplog.at_level("INFO", logger="labelwise"):
        texts = read_pool(AdaptConfig(pool_file=str(pool), dataset_dir=str(divorce_small)))
    assert not set(texts) & set(dev)
    assert "一段新的文字。" in texts and len(texts) == len(set(texts))
    train = {line.split("\t")[0] for line in (divorce_small / "train.txt").read_text(encoding="utf-8").splitlines()}
    assert train - set(dev) <= set(texts)  # the dataset's train texts join the pool
    assert "are also dev or test texts" in caplog.text


@pytest.mark.parametrize("content, words", [("", "distinct texts left in the pool"),
                                            ("a\tb\n" * 3, "distinct texts left in the pool")])
def test_a_bad_pool_is_one_line(content, words, tiny_zh_encoder, tmp_path, capsys):
    pool = tmp_path / "pool.txt"
    pool.write_text(content, encoding="utf-8")
    assert main(["adapt", "--pool_file", str(pool), "--model_name", str(tiny_zh_encoder), "--save_dir",
                 str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert words in err and str(pool) in err and err.count("\n") == 1
    assert main(["adapt", "--pool_file", str(tmp_path / "missing.txt"), "--save_dir", str(tmp_path / "a")]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert main(["adapt", "--save_dir", str(tmp_path / "a")]) == 2
    assert "--pool_file FILE and/or --dataset_dir DIR" in capsys.readouterr().err


def test_adapt_never_writes_over_a_folder_it_did_not_make(tiny_zh_encoder, divorce_small, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    assert main(["adapt", "--pool_file", str(pool_file(divorce_small, tmp_path / "pool.txt")), "--model_name",
                 str(tiny_zh_encoder), "--save_dir", str(mine)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (mine / "notes.txt").read_text(encoding="utf-8") == "keep"


def test_an_interrupted_adaptation_resumes_where_it_stopped(tiny_zh_encoder, divorce_small, tmp_path, monkeypatch):
    pool = pool_file(divorce_small, tmp_path / "pool.txt")
    cfg = AdaptConfig(pool_file=str(pool), model_name=str(tiny_zh_encoder), save_dir=str(tmp_path / "ad"),
                      save_steps=4, objective="mlm", **FAST)
    real, calls = Objective.loss, []

    def dies_at_step_ten(self, rows):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return real(self, rows)

    monkeypatch.setattr(Objective, "loss", dies_at_step_ten)
    with pytest.raises(KeyboardInterrupt):
        adapt(cfg)
    state = json.loads((tmp_path / "ad.adapt_state" / "state.json").read_text(encoding="utf-8"))
    assert state["step"] == 8 and not (tmp_path / "ad" / "adapt.json").exists()
    with pytest.raises(Exception, match="resume"):
        adapt(cfg)  # a new run without --resume does not silently throw the state away
    calls.clear()
    monkeypatch.setattr(Objective, "loss", real)
    counted = []
    monkeypatch.setattr(Objective, "loss", lambda self, rows: counted.append(1) or real(self, rows))
    result = adapt(cfg, resume=True)
    assert len(counted) == 24 - 8 and result.info["steps"] == 24
