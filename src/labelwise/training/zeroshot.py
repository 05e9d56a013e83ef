"""Zero-shot: a classifier from label names alone (``labelwise zeroshot``).

Each label's logit is the text's cosine to the label name's vector, scaled (the head reads unit-length
vectors: ``normalize``); per-label thresholds are tuned on dev when there is one. The output is an ordinary
checkpoint.

A label's text is its name, or its ``word`` on a ``label==word`` line of label.txt. In a label tree
(``体育##足球``, :mod:`labelwise.data.hierarchy`) the name is a path, which :func:`label_texts` puts in words:
``last`` (default) embeds the last element (``足球``), ``path`` the whole path joined by spaces (``体育 足球``).
Measured with ``python benchmarks/accuracy/hierarchy.py --zeroshot_names`` (2-core CPU, 2026-12-03; micro / macro-F1 over
every node, consistent decisions): goemotions_ekman, all-minilm-l6-v2, 3000 test texts: last 34.76 / 16.94,
path 33.83 / 16.95; divorce_tree, m3e-small, 806 dev texts: last 60.20 / 37.04, path 61.47 / 37.14. About a point
either way, neither side winning on both, so the default stays the shorter name, the one ``--hierarchy leaves``
shows; a ``label==word`` line names any label otherwise. Few-shot anchors and retrieval's label-name rows use
the same texts.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from labelwise.data.dataset import load_dataset, read_label_words
from labelwise.data.hierarchy import DEFAULT_SEP, Hierarchy
from labelwise.errors import LabelwiseError
from labelwise.files import CHECKPOINT, prepare_output_dir
from labelwise.locks import locks_output
from labelwise.model.checkpoint import CheckpointMeta, save_checkpoint
from labelwise.model.device import resolve_device
from labelwise.model.encoders import build_model
from labelwise.model.language import pick_encoder
from labelwise.predict.classifier import Classifier, TorchBackend

log = logging.getLogger("labelwise")

SCALE = 20.0  # logit = SCALE × (cosine − offset): cosines live in [-1, 1], probabilities need a wider range
LABEL_NAMINGS = ("last", "path")  # how a tree label is put in words; the first is the default


def label_texts(label_words: dict[str, str], hierarchy: Hierarchy, naming: str = LABEL_NAMINGS[0]) -> dict[str, str]:
    """label → the text an encoder embeds for it (``label_words`` from :func:`read_label_words`).

    A ``label==word`` line of label.txt wins. Otherwise a tree label (a path) is named by its last element
    (``naming`` last) or by its whole path with spaces between the levels (``path``); flat labels stay as they are.
    """
    if naming not in LABEL_NAMINGS:
        raise LabelwiseError(f"the label naming must be one of {', '.join(LABEL_NAMINGS)}, got {naming!r}")
    if hierarchy.is_flat:
        return dict(label_words)
    out = {}
    for label, word in label_words.items():
        if word == label and label in hierarchy.labels:
            names = [hierarchy.name(j) for j in hierarchy.path(hierarchy.index(label))]
            word = names[-1] if naming == "last" else " ".join(names)
        out[label] = word
    return out


@locks_output("save_dir")  # one run at a time writes the folder
def zero_shot(dataset_dir: str, save_dir: str = "checkpoint", model_name: str | None = None,
              pooling: str = "auto", max_seq_length: int | None = 128, device: str | None = None,
              label_file: str = "label.txt", overwrite: bool = False, hierarchy_sep: str | None = DEFAULT_SEP,
              label_naming: str = LABEL_NAMINGS[0]) -> Classifier:
    """A classifier from label names alone; thresholds tuned on dev.txt when the folder has one.

    ``hierarchy_sep``: how label names spell tree paths; ``label_naming``: how a path is put in words
    (:func:`label_texts`).

    ``save_dir`` must be missing, empty or a checkpoint; ``overwrite`` allows any other folder but the dataset's
    (:func:`labelwise.files.prepare_output_dir`).
    """
    from labelwise.training.scoring import evaluate_model, score_checkpoint

    prepare_output_dir(save_dir, CHECKPOINT, overwrite=overwrite, inputs={"dataset_dir": dataset_dir})
    device = resolve_device(device)
    ds = load_dataset(dataset_dir, label_file=label_file, require=(), hierarchy_sep=hierarchy_sep)
    label_words = label_texts(read_label_words(Path(dataset_dir) / label_file), ds.hierarchy, label_naming)
    max_seq_length = max_seq_length or 128
    model_name, _ = pick_encoder(model_name, list(label_words.values()) + [e.text for e in ds.dev], "the label names and dev texts")
    model, tokenizer, pooling = build_model(model_name, ds.labels, pooling)
    model.normalize = True
    model.to(device).eval()
    meta = CheckpointMeta(labels=ds.labels, max_seq_length=max_seq_length, base_model=model_name, pooling=pooling,
                          hierarchy_sep=ds.hierarchy_sep,
                          training_args={"route": "zero-shot", "label_words": label_words, "label_naming": label_naming})
    clf = Classifier(TorchBackend(model, device), tokenizer, meta)
    vectors = clf.features(list(label_words.values()))
    texts = [e.text for e in ds.train + ds.dev] or list(label_words.values())
    cosines = clf.features(texts) @ vectors.T
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(SCALE * vectors))
        model.head.bias.copy_(torch.from_numpy(-SCALE * np.quantile(cosines, 0.9, axis=0)).float())
    if ds.dev:
        probs, _ = evaluate_model(model, tokenizer, meta, ds.dev, meta.labels, 32)
        # per-label thresholds, unshrunk: each label's cosine offset is its own, so one shared threshold means
        # nothing here (measured: shrinking cost 4.4 micro-F1 on divorce, 1.8 on GoEmotions; benchmarks/RESULTS.md)
        score_checkpoint(model, tokenizer, meta, probs, ds.dev, ds.test, 0, prior_strength=0)
    else:
        log.warning("zero-shot: no dev.txt in %s, so every label keeps threshold 0.5", dataset_dir)
    model.eval()
    save_checkpoint(save_dir, model, tokenizer, meta, overwrite=overwrite)
    return Classifier(TorchBackend(model, device), tokenizer, meta, path=Path(save_dir))


__all__ = ['LABEL_NAMINGS', 'label_texts', 'zero_shot']

