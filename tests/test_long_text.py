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
