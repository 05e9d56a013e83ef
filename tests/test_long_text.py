"""Issue 29: the encoder follows the texts' script; long texts are read in windows in training and prediction."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from labelwise.model.language import choose_encoder, pick_encoder, text_script


def test_script_of_a_text():
    assert text_script("婚生子杨某甲由原告抚养") == "cjk"
    assert text_script("I love this, thank you so much") == "other"
    assert text_script("原告于2013年购买了iPhone手机") == "cjk"
    assert text_script("12345 !!! 😀") is None


def test_encoder_follows_the_script_and_warns_on_mixed_data(caplog):
    assert choose_encoder(["婚后生有一女。"] * 5).model_name == "m3e-small"
    assert choose_encoder(["We had a daughter after marriage."] * 5).model_name == "all-minilm-l6-v2"
    with caplog.at_level(logging.INFO, logger="labelwise"):
        name, choice = pick_encoder(None, ["婚后生有一女。"] * 3 + ["a text in English"] * 7)
    assert name == "all-minilm-l6-v2" and abs(choice.cjk_share - 0.3) < 1e-9
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning and "30%" in warning[0].getMessage() and "70%" in warning[0].getMessage()
    assert pick_encoder("m3e-small", ["only English here"]) == ("m3e-small", None)  # --model_name always wins


@pytest.fixture
def offline_tiny(monkeypatch, tiny_zh_encoder, tiny_en_encoder):
    """The two offline aliases resolve to the tiny encoders with their real tokenizers."""
    from labelwise.model import encoders

    real = encoders.resolve_model_name
    folders = {"m3e-small": str(tiny_zh_encoder), "all-minilm-l6-v2": str(tiny_en_encoder)}
    monkeypatch.setattr(encoders, "resolve_model_name", lambda name: folders.get(name) or real(name))


def _write_dataset(folder, rows, labels):
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{t}\t{','.join(ls)}\n" for t, ls in rows)
    for split in ("train", "dev"):
        (folder / f"{split}.txt").write_text(lines, encoding="utf-8")
    (folder / "label.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("language, texts, expected", [
    ("zh", ["婚后生有一女。", "原告要求离婚。"], "m3e-small"),
    ("en", ["we had a daughter", "the plaintiff asks for a divorce"], "all-minilm-l6-v2"),
    ("mixed", ["we had a daughter", "the plaintiff asks for a divorce", "婚后生有一女。"], "all-minilm-l6-v2"),
])
def test_train_without_model_name_picks_the_encoder_of_the_data(offline_tiny, tmp_path, language, texts, expected):
    from labelwise.cli.main import main

    data = _write_dataset(tmp_path / language, [(t, ["a" if i % 2 else "b"]) for i, t in enumerate(texts * 4)],
                          ["a", "b"])
    ckpt = tmp_path / f"ckpt_{language}"
    assert main(["-q", "train", "--dataset_dir", str(data), "--save_dir", str(ckpt), "--epochs", "1",
                 "--no_baseline"]) == 0
    meta = json.loads((ckpt / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["base_model"] == expected and meta["choices"]["encoder"]["model_name"] == expected
    card = (ckpt / "README.md").read_text(encoding="utf-8")
    assert f"Encoder `{expected}`, chosen because" in card


@pytest.mark.parametrize("texts, expected", [(["婚后生有一女。", "原告要求离婚。"], "m3e-small"),
                                             (["we had a daughter", "the plaintiff asks for a divorce"],
                                              "all-minilm-l6-v2")])
def test_index_and_select_cold_start_pick_the_encoder_of_the_texts(offline_tiny, tmp_path, caplog, texts, expected):
    from labelwise.cli.main import main

    data = _write_dataset(tmp_path / "data", [(t, ["a" if i % 2 else "b"]) for i, t in enumerate(texts * 4)],
                          ["a", "b"])
    (data / "data.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(texts * 3)), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="labelwise"):
        assert main(["-q", "index", "--dataset_dir", str(data), "--index_dir", str(tmp_path / "index"),
                     "--vector_db", "file"]) == 0
        assert main(["-q", "select", "--dataset_dir", str(data), "--num", "2",
                     "--output_file", str(tmp_path / "next.jsonl")]) == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("encoder ")]
    assert len(said) == 2 and all(line.startswith(f"encoder {expected}:") for line in said), said
    assert "the texts to index" in said[0] and "the pool's texts" in said[1]
    info = json.loads((tmp_path / "index" / "index.json").read_text(encoding="utf-8"))
    assert info["encoder"]  # the index records the encoder it embedded with
    assert len((tmp_path / "next.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_auto_reading_keeps_short_data_as_it_was_and_windows_long_data(tiny_en_encoder):
    from transformers import AutoTokenizer

    from labelwise.training.reading import plan_reading

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_en_encoder))
    short, _ = plan_reading(tokenizer, ["a short text"] * 20, None, "auto", 512)
    assert (short.max_seq_length, short.long_text, short.windows) == (128, "truncate", 20)
    long_texts = [" ".join(["word"] * 900)] * 5
    long, _ = plan_reading(tokenizer, long_texts, None, "auto", 512)
    assert long.long_text == "slide" and long.max_seq_length == 128 and long.windows > 5 * 8
    middle, _ = plan_reading(tokenizer, [" ".join(["word"] * 200)] * 10, None, "auto", 512)
    assert (middle.max_seq_length, middle.long_text) == (256, "truncate")  # held whole at 256


def test_window_pooling_in_numpy_and_torch_agree():
    import torch

    from labelwise.predict.batching import pool_windows
    from labelwise.training.reading import pool_window_logits

    logits = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 2.0]], dtype=np.float32)
    owner = np.array([0, 0, 1])
    for how in ("max", "mean"):
        expected = pool_windows(logits, owner, 2, how)
        got = pool_window_logits(torch.from_numpy(logits), torch.from_numpy(owner), 2, how).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(pool_windows(logits, owner, 2, "max"), [[3.0, 0.5], [-1.0, 2.0]])
    np.testing.assert_allclose(pool_windows(logits, owner, 2, "mean"), [[2.0, -0.75], [-1.0, 2.0]])


def _late_evidence_dataset(folder, n_train=160, n_dev=60):
    """Each text: filler words, then the one word that decides its label, past the first 48 tokens."""
    rng = np.random.default_rng(0)
    filler = "the a of and to in is was for on with as by at from that this it be are".split()
    cue = {"zebra": "animal", "violin": "music"}

    def rows(n):
        out = []
        for i in range(n):
            word = list(cue)[i % 2]
            words = list(rng.choice(filler, 60)) + [word] + list(rng.choice(filler, 5))
            out.append(f"{' '.join(words)}\t{cue[word]}")
        return out

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n".join(rows(n_train)) + "\n", encoding="utf-8")
    (folder / "dev.txt").write_text("\n".join(rows(n_dev)) + "\n", encoding="utf-8")
    (folder / "label.txt").write_text("animal\nmusic\n", encoding="utf-8")
    return folder


@pytest.mark.integration
def test_evidence_past_the_window_is_learnt_with_windows_and_missed_without(tiny_en_encoder, tmp_path, caplog):
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    data = _late_evidence_dataset(tmp_path / "late")
    scores = {}
    for mode in ("truncate", "slide"):
        with caplog.at_level(logging.INFO, logger="labelwise"):
            result = train(TrainConfig(dataset_dir=str(data), save_dir=str(tmp_path / mode),
                                       model_name=str(tiny_en_encoder), epochs=6, learning_rate=1e-3, batch_size=16,
                                       max_seq_length=32, long_text=mode, pooling="mean", progress=False, seed=1,
                                       baseline=False, threshold_tuning=False))
        scores[mode] = result.classifier.meta.metrics["dev@0.5"]["micro_f1"]
    assert scores["slide"] >= 90 and scores["truncate"] <= 75, scores
    first = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("reading: "))
    assert "160 texts" in first and "min of training steps" in first  # the budget, in the first line
