"""Sparse data: dev examples the training set barely covers, and the data that would cover them.

1. Each dev example's *support score* is the mean cosine similarity of its ``rationale_num_sparse``
   (3) closest training examples (features of the final layer's input, see ``similarity``). The
   ``sparse_num`` lowest are the sparse set: the model has seen little like them.
2. Support data are the candidates closest to the sparse set: for each sparse example its best
   candidate above ``support_threshold``, then its second best, ... (up to ``rationale_num_support``
   ranks) until ``support_num`` are chosen. Candidates are the training set (to augment: the chosen
   examples are duplicated or rewritten by a word-level strategy) or unlabelled ``data.txt`` (to
   annotate: written as doccano JSONL for labelling).

Outputs (PaddleNLP's formats): ``sparse.txt`` (dev lines), ``support.txt`` (``text\\tlabels`` when
augmenting, bare texts when annotating), and either ``train_sparse_aug.txt`` (train + support, ready
to train on) or ``support.jsonl`` (doccano import).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.analysis.augment import AUG_TYPES
from labelwise.analysis.similarity import SupportIndex, logits_from_features
from labelwise.data.dataset import (
    Example,
    check_same_labels,
    load_dataset,
    multi_hot,
    write_examples,
    write_lines,
)
from labelwise.data.tables import DatasetFiles, TableColumns, columns_of
from labelwise.evaluation.decision import decision_matrix, sigmoid
from labelwise.evaluation.metrics import f1_scores
from labelwise.files import check_outputs
from labelwise.predict.classifier import Classifier
from labelwise.settings import check_fields, same_setting, setting

log = logging.getLogger("labelwise")

SPARSE_AUG_STRATEGIES = ("duplicate", "substitute", "insert", "delete", "swap")

__all__ = ["SparseConfig", "SparseResult", "support_scores", "select_support", "find_sparse", "run_sparse",
           "SPARSE_AUG_STRATEGIES"]


@dataclass
class SparseConfig:
    dataset_dir: str = setting(help="folder with train.txt, dev.txt, label.txt (or .csv / .jsonl / .parquet "
                                    "splits)")
    params_path: str = setting("checkpoint", help="checkpoint folder from `labelwise train`")
    output_dir: str | None = setting(None, help="where the files go (default: --dataset_dir, PaddleNLP's place)")
    annotate: bool = setting(False, help="pick support texts from unlabelled --unlabeled_file to annotate "
                             "(doccano JSONL)")
    aug_strategy: str = setting("substitute", help="how support examples are rewritten", choices=SPARSE_AUG_STRATEGIES)
    aug_type: str = setting("synonym", choices=AUG_TYPES,
                            help="where substitute/insert get words: synonym (Cilin / Moby thesaurus), homonym "
                                 "(Chinese pinyin), mlm (a masked LM, needs --mlm_model)")
    aug_percent: float = setting(0.1, help="share of words changed", minimum=0, maximum=1)
    create_n: int = setting(1, help="new texts per example", minimum=1)
    mlm_model: str | None = setting(None, help="folder of a model with a masked-LM head, for --aug_type mlm")
    sparse_num: int = setting(100, help="dev examples to call sparse", minimum=1)
    support_num: int = setting(100, help="support examples to pick", minimum=1)
    support_threshold: float = setting(0.7, help="minimum cosine similarity of a support example (-1 to 1)",
                                       minimum=-1, maximum=1)
    rationale_num_sparse: int = setting(3, help="neighbours averaged for the support score", minimum=1)
    rationale_num_support: int = setting(6, help="neighbours searched per sparse example", minimum=1)
    train_file: str = same_setting(DatasetFiles, "train_file")
    dev_file: str = same_setting(DatasetFiles, "dev_file")
    label_file: str = same_setting(DatasetFiles, "label_file")
    text_column: str | None = same_setting(TableColumns, "text_column")  # tables: labelwise.data.tables
    label_column: str | None = same_setting(TableColumns, "label_column")
    label_columns: list[str] | None = same_setting(TableColumns, "label_columns")
    label_sep: str = same_setting(TableColumns, "label_sep")
    unlabeled_file: str = setting("data.txt", help="unlabelled texts, with --annotate")
    sparse_file: str = setting("sparse.txt", help="output: the sparse dev examples")
    support_file: str = setting("support.txt", help="output: the support examples")
    support_doccano_file: str = setting("support.jsonl", help="output with --annotate: doccano JSONL", cli=False)
    train_output_file: str = setting("train_sparse_aug.txt", help="train + support, when augmenting")
    batch_size: int = setting(32, help="texts per batch", minimum=1)
    max_seq_length: int | None = setting(None, help="default: the model's", minimum=1)
    device: str | None = setting(None, help="cpu | gpu | gpu:N")
    seed: int = setting(3, help="random seed")
    overwrite: bool = setting(False, help="replace existing output files")
    progress: bool = setting(False, help="progress bars", cli=False)

    def validate(self) -> SparseConfig:
        check_fields(self)
        return self


@dataclass
class SparseResult:
    sparse: list[tuple[Example, float]]  # dev examples with their support score, lowest first
    support: list[tuple[str, tuple[str, ...] | None, float]]  # chosen candidates: text, labels, score
    written: list[Path] = field(default_factory=list)
    dev_mean_score: float = 0.0
    sparse_f1: float | None = None  # micro-F1 of the model on the sparse set / on the rest of dev
    rest_f1: float | None = None
    augmented: list[Example] = field(default_factory=list)

    def summary(self) -> str:
        scores = [s for _, s in self.sparse]
        lines = [f"sparse data: {len(self.sparse)} dev examples, mean support score "
                 f"{np.mean(scores):.4f} (all dev: {self.dev_mean_score:.4f})"]
        if self.sparse_f1 is not None:
            lines.append(f"model micro-F1 on the sparse examples {self.sparse_f1:.2f} vs the rest of dev "
                         f"{self.rest_f1:.2f}")
        if self.support:
            lines.append(f"support data: {len(self.support)} examples, mean score "
                         f"{np.mean([s for *_, s in self.support]):.4f}")
        lines += [f"written: {p}" for p in self.written]
        return "\n".join(lines)


def support_scores(index: SupportIndex, features: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean cosine of each row's ``k`` nearest pool examples: low = little training evidence."""
    _, scores = index.search(features, k)
    return scores.mean(axis=1)


def select_support(index: SupportIndex, sparse_features: np.ndarray, support_num: int,
                   threshold: float = 0.7, ranks: int = 6,
                   exclude: set[int] | None = None) -> list[tuple[int, float]]:
    """Pool rows supporting the sparse examples: rank 1 of every sparse example, then rank 2, ...

    Only scores above ``threshold`` count; each pool row is taken once. Fewer than ``support_num``
    come back when the first ``ranks`` neighbours run out (raise --rationale_num_support or lower
    --support_threshold then).
    """
    indices, scores = index.search(sparse_features, ranks)
    chosen: dict[int, float] = {}
    exclude = exclude or set()
    for rank in range(indices.shape[1]):
        for row in range(len(indices)):
            i, s = int(indices[row, rank]), float(scores[row, rank])
            if s > threshold and i not in chosen and i not in exclude:
                chosen[i] = s
                if len(chosen) >= support_num:
                    return list(chosen.items())
    return list(chosen.items())


def find_sparse(classifier: Classifier, train_index: SupportIndex, dev: Sequence[Example], sparse_num: int,
                k: int = 3, batch_size: int = 32, max_seq_length: int | None = None,
                labels: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Dev rows with the lowest support scores: (row indices lowest first, all scores, extra stats)."""
    features = classifier.features([e.text for e in dev], batch_size=batch_size, max_seq_length=max_seq_length)
    scores = support_scores(train_index, features, k)
    order = np.argsort(scores, kind="stable")[:sparse_num]
    stats: dict = {"features": features, "dev_mean_score": float(scores.mean())}
    if labels is not None and len(order) < len(dev):
        probs = sigmoid(logits_from_features(classifier, features))
        pred = decision_matrix(probs, classifier.thresholds, hierarchy=classifier.hierarchy).astype(np.float32)
        gold = multi_hot(dev, labels)
        rest = np.setdiff1d(np.arange(len(dev)), order)
        stats["sparse_f1"] = f1_scores(gold[order], pred[order])[0]
        stats["rest_f1"] = f1_scores(gold[rest], pred[rest])[0]
    return order, scores, stats


def _outputs(cfg: SparseConfig, out_dir: Path) -> dict[str, Path]:
    files = {"sparse": out_dir / cfg.sparse_file, "support": out_dir / cfg.support_file}
    if cfg.annotate:
        files["doccano"] = out_dir / cfg.support_doccano_file
    else:
        files["train"] = out_dir / cfg.train_output_file
    inputs = [Path(cfg.dataset_dir) / f for f in (cfg.train_file, cfg.dev_file, cfg.label_file, cfg.unlabeled_file)]
    check_outputs(files.values(), inputs, overwrite=cfg.overwrite)
    return files


def run_sparse(cfg: SparseConfig, classifier: Classifier | None = None) -> SparseResult:
    """The whole pipeline: score dev, pick sparse examples and their support, write the files."""
    cfg.validate()
    ds = load_dataset(cfg.dataset_dir, train_file=cfg.train_file, dev_file=cfg.dev_file,
                      label_file=cfg.label_file, data_file=cfg.unlabeled_file,
                      require=("train", "dev", "data") if cfg.annotate else ("train", "dev"),
                      columns=columns_of(cfg))
    files = _outputs(cfg, Path(cfg.output_dir or cfg.dataset_dir))
    classifier = classifier or Classifier.load(cfg.params_path, device=cfg.device, require=("gradients",))
    check_same_labels(classifier.labels, ds.labels, classifier.path, Path(cfg.dataset_dir) / cfg.label_file)
    opts = dict(batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length)
    train_index = SupportIndex.build(classifier, ds.train, progress=cfg.progress, **opts)
    order, scores, stats = find_sparse(classifier, train_index, ds.dev, cfg.sparse_num, cfg.rationale_num_sparse,
                                       labels=ds.labels, **opts)
    sparse_features = stats["features"][order]
    result = SparseResult([(ds.dev[i], float(scores[i])) for i in order], [], dev_mean_score=stats["dev_mean_score"],
                          sparse_f1=stats.get("sparse_f1"), rest_f1=stats.get("rest_f1"))
    write_examples(files["sparse"], [e for e, _ in result.sparse])
    result.written.append(files["sparse"])

    if cfg.annotate:
        from labelwise.data.annotation import write_doccano

        known = {e.text for e in ds.train}
        pool = SupportIndex.build(classifier, ds.data, progress=cfg.progress, **opts)
        exclude = {i for i, text in enumerate(pool.texts) if text in known}
        chosen = select_support(pool, sparse_features, cfg.support_num, cfg.support_threshold,
                                cfg.rationale_num_support, exclude)
        result.support = [(pool.texts[i], None, s) for i, s in chosen]
        write_lines(files["support"], [t for t, *_ in result.support])
        write_doccano(files["doccano"], [t for t, *_ in result.support])
        result.written += [files["support"], files["doccano"]]
    else:
        chosen = select_support(train_index, sparse_features, cfg.support_num, cfg.support_threshold,
                                cfg.rationale_num_support)
        result.support = [(train_index.texts[i], train_index.labels[i], s) for i, s in chosen]
        result.augmented = augment_support([Example(t, l) for t, l, _ in result.support], cfg)
        write_examples(files["support"], result.augmented)
        write_examples(files["train"], list(ds.train) + result.augmented)
        result.written += [files["support"], files["train"]]
    if len(result.support) < cfg.support_num:
        log.warning("only %d support examples scored above %.2f within the %d nearest of each sparse example "
                    "(asked %d)", len(result.support), cfg.support_threshold, cfg.rationale_num_support,
                    cfg.support_num)
    return result


def augment_support(examples: list[Example], cfg: SparseConfig) -> list[Example]:
    """``duplicate``: the chosen examples again; otherwise ``create_n`` rewrites of each."""
    if cfg.aug_strategy == "duplicate":
        return list(examples)
    from labelwise.analysis.augment import WordAugmenter, augment_examples

    augmenter = WordAugmenter(cfg.aug_strategy, cfg.aug_type, cfg.create_n, cfg.aug_percent, cfg.seed,
                              cfg.mlm_model, cfg.device)
    created, _ = augment_examples(examples, augmenter)
    return created
