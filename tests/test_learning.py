"""Models learn: the real default encoder on held-out data (slow), and a rare label from a handful of examples.

Both fine-tune the real m3e-small (marked slow): the divorce test takes about 1.5 minutes on 2 CPU cores.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DIVORCE, make_subset
from labelwise import Classifier
from labelwise.data.dataset import load_dataset, multi_hot
from labelwise.evaluation.metrics import f1_scores
from labelwise.training.config import TrainConfig
from labelwise.training.finetune import train

# Measured on 2026-11-25 (2 CPU cores, seed 3, tuned thresholds): the default recipe reaches micro-F1 82.0 here;
# the previous recipe ([CLS] + pooler, lr 1e-4) reached 54.2 and the best trivial baseline is 42.3. The floor
# leaves 10 points for run-to-run noise and sits far above both.
MICRO_F1_FLOOR = 72.0


@pytest.mark.slow
def test_m3e_small_learns_the_divorce_labels(tmp_path):
    data = make_subset(DIVORCE, tmp_path / "data", n_train=640, n_dev=200)
    result = train(TrainConfig(dataset_dir=str(data), save_dir=str(tmp_path / "ckpt"), model_name="m3e-small",
                               epochs=3, batch_size=8, max_seq_length=64, progress=False))
    assert len(result.history) == 3 and result.history[-1]["loss"] < result.history[0]["loss"]

    ds = load_dataset(data)
    y = multi_hot(ds.dev, ds.labels)
    # trivial baseline: give every text the label set that scores best when always predicted (top-k frequent)
    order = np.argsort(-y.sum(0))
    baseline = max(f1_scores(y, np.broadcast_to(np.isin(np.arange(y.shape[1]), order[:k]), y.shape))[0]
                   for k in range(1, 4))
    clf = Classifier.load(result.save_dir)
    predicted = np.array([[label in p.labels for label in ds.labels]
                          for p in clf.predict([e.text for e in ds.dev])])
    micro, _ = f1_scores(y, predicted)
    print(f"micro-F1 {micro:.1f} vs trivial baseline {baseline:.1f}")
    assert micro >= MICRO_F1_FLOOR > baseline + 5


def _keyword_dataset(folder, rng, n_train=160, rare_every=20):
    """Synthetic texts: label 甲 ↔ 婚姻, 乙 ↔ 财产 (common), 稀 ↔ 抚养 (rare: 8 of 160 training texts)."""
    filler = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你")
    keys = {"甲": "婚姻", "乙": "财产", "稀": "抚养"}

    def text(words):
        chars = [str(rng.choice(filler)) for _ in range(12)]
        for word in words:
            chars.insert(int(rng.integers(0, len(chars))), word)
        return "".join(chars)

    def split(n, every):
        rows = []
        for i in range(n):
            labels = [k for k, p in (("甲", 0.5), ("乙", 0.3)) if rng.random() < p] + (["稀"] if i % every == 0 else [])
            rows.append(text([keys[k] for k in labels]) + "\t" + ",".join(labels))
        return "\n".join(rows) + "\n"

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.txt").write_text("甲\n乙\n稀\n", encoding="utf-8")
    (folder / "train.txt").write_text(split(n_train, rare_every), encoding="utf-8")
    (folder / "dev.txt").write_text(split(30, 3), encoding="utf-8")
    return folder, text


@pytest.mark.slow
def test_a_rare_label_seen_a_handful_of_times_is_still_predicted(tmp_path):
    # 8 examples of 稀 in 160. The default head (bias at the label priors, 30x learning rate, mean pooling)
    # learns it in 6 short epochs; the previous recipe ([CLS] + pooler, head at the encoder's rate, bias 0)
    # does not, from the same data and steps (measured: 稀 probability 0.97 vs 0.15 on texts with 抚养).
    rng = np.random.default_rng(0)
    data, text = _keyword_dataset(tmp_path / "data", rng)
    with_keyword = [text(["抚养"]) for _ in range(20)]
    without = [text(["婚姻"]) for _ in range(20)]
    common = dict(dataset_dir=str(data), model_name="m3e-small", epochs=6, batch_size=16, max_seq_length=32,
                  progress=False, baseline=False, threshold_tuning=False)
    rare_prob = {}
    for name, recipe in (("default", {}), ("previous", dict(pooling="cls", learning_rate=1e-4,
                                                            head_learning_rate=1e-4, head_prior=False))):
        clf = Classifier.load(train(TrainConfig(save_dir=str(tmp_path / name), **common, **recipe)).save_dir)
        rare_prob[name] = (clf.predict_proba(with_keyword)[:, 2], clf.predict_proba(without)[:, 2])
    hit, miss = rare_prob["default"]
    assert (hit > 0.5).mean() >= 0.9 and (miss < 0.5).mean() >= 0.9
    assert (rare_prob["previous"][0] > 0.5).mean() <= 0.2  # what the head's prior and learning rate buy
