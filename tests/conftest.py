"""Shared fixtures: tiny encoders (real tokenizers, random small BERTs) and small data subsets.

Everything is built offline from what the packages ship and from the repo's data/ folder, so the suite
needs no network and runs in seconds per test.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DIVORCE = REPO / "data" / "divorce"
GOEMOTIONS = REPO / "data" / "goemotions"


def make_tiny_encoder(folder: Path, base: str) -> Path:
    """A 2-layer, 32-wide BERT with the tokenizer of offline model ``base`` (m3e-small / all-minilm-l6-v2)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from labelwise.models import resolve_model_name

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(base))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_subset(source: Path, folder: Path, n_train: int, n_dev: int, n_test: int = 0) -> Path:
    """The first lines of each split (deterministic) plus label.txt and a data.txt from dev texts."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.txt").write_text((source / "label.txt").read_text(encoding="utf-8"), encoding="utf-8")
    for name, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        if n:
            lines = (source / f"{name}.txt").read_text(encoding="utf-8").splitlines()[:n]
            (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dev = (source / "dev.txt").read_text(encoding="utf-8").splitlines()[-8:]
    (folder / "data.txt").write_text("\n".join(line.split("\t")[0] for line in dev) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_zh_encoder(tmp_path_factory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_zh"), "m3e-small")


@pytest.fixture(scope="session")
def tiny_en_encoder(tmp_path_factory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_en"), "all-minilm-l6-v2")


@pytest.fixture(scope="session")
def divorce_small(tmp_path_factory) -> Path:
    """300 train / 80 dev examples of CAIL2019 divorce, and a data.txt of 8 texts."""
    return make_subset(DIVORCE, tmp_path_factory.mktemp("divorce_small"), 300, 80)


@pytest.fixture(scope="session")
def goemotions_small(tmp_path_factory) -> Path:
    """300 train / 80 dev / 80 test GoEmotions examples."""
    return make_subset(GOEMOTIONS, tmp_path_factory.mktemp("goemotions_small"), 300, 80, 80)


def _train_tiny(encoder: Path, dataset: Path, save_dir: Path) -> Path:
    from labelwise.training import TrainConfig, train

    train(TrainConfig(dataset_dir=str(dataset), save_dir=str(save_dir), model_name=str(encoder), epochs=3,
                      learning_rate=3e-3, batch_size=16, max_seq_length=64, progress=False, seed=1))
    return save_dir


@pytest.fixture(scope="session")
def tiny_zh_checkpoint(tmp_path_factory, tiny_zh_encoder, divorce_small) -> Path:
    """A tiny model trained for 3 epochs on divorce_small: a real checkpoint folder, seconds to make."""
    return _train_tiny(tiny_zh_encoder, divorce_small, tmp_path_factory.mktemp("ckpt_zh") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_en_checkpoint(tmp_path_factory, tiny_en_encoder, goemotions_small) -> Path:
    return _train_tiny(tiny_en_encoder, goemotions_small, tmp_path_factory.mktemp("ckpt_en") / "checkpoint")
