"""Pruning: smaller, faster copies of a fine-tuned checkpoint, distilled from it (PaddleNLP's prune step).

``prune(PruneConfig(params_path="checkpoint", dataset_dir="data", width_mult_list=["3/4", "1/2"]))`` writes one
checkpoint folder per shape to ``output_dir`` (``width_mult_0.75``, ``width_mult_0.5_depth_mult_0.5``, ...).

The method is DynaBERT's, as PaddleNLP runs it, in PyTorch (mechanics in :mod:`labelwise.model.surgery`):

1. rank every attention head and feed-forward neuron on the dev set (gradient of an all-ones gate) and reorder
   them, most important first; for ``depth_mult_list`` below 1, rank layers by the dev loss without each;
2. train: every batch runs the frozen fine-tuned model (the teacher) once and every pruned shape (first k
   heads, first m neurons, the kept layers, all sharing one set of weights) against it; loss = soft
   binary cross-entropy on the teacher's probabilities + 0.1 × MSE on the embeddings and every kept layer's
   hidden states;
3. every ``save_steps`` steps and at each epoch's end, score each shape on dev; when its macro-F1 improves,
   cut it out as a small dense model, tune its thresholds on dev and write its folder (complete, atomically).

Beyond PaddleNLP: depth, pruned folders that every labelwise command takes (predict, evaluate, export, serve,
``train --init_from_ckpt``), and a summary table.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from labelwise.compress.config import PruneConfig
from labelwise.data.dataset import check_same_labels, load_dataset, multi_hot
from labelwise.errors import LabelwiseError
from labelwise.files import CHECKPOINT, prepare_output_dir
from labelwise.locks import output_lock
from labelwise.model.checkpoint import (
    META_FILE,
    CheckpointMeta,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from labelwise.model.blend import load_blend
from labelwise.model.device import resolve_device
from labelwise.model.network import MultiLabelModel
from labelwise.model.surgery import (
    Shape,
    active_shape,
    cut,
    full_shape,
    make_sliceable,
    rank_layers,
    rank_units,
    reorder,
)
from labelwise.predict.batching import encode, length_grouped_batches, pad_batch
from labelwise.training.loop import StepLoop, linear_schedule, random_subset
from labelwise.training.scoring import evaluate_model, score_checkpoint
from labelwise.training.tracking import Tracker, open_tracker

log = logging.getLogger("labelwise")

HIDDEN_LOSS_WEIGHT = 0.1  # PaddleNLP's weight of the embedding and hidden-state MSE against the logit loss


@dataclass
class PrunedModel:
    """One shape's result: where it went and how it scored (dev at 0.5, its best evaluation)."""

    width: Fraction
    depth: Fraction
    shape: Shape
    folder: Path
    params: int = 0
    micro_f1: float = -1.0
    macro_f1: float = -1.0
    step: int = 0


@dataclass
class PruneResult:
    teacher: dict  # the unpruned model: params, dev micro/macro-F1 at 0.5
    models: list[PrunedModel] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        rows = [("model", "layers", "heads", "ffn", "params", "dev micro-F1", "dev macro-F1")]
        t = self.teacher
        rows.append(("unpruned", str(t["layers"]), str(t["heads"]), str(t["neurons"]), f"{t['params'] / 1e6:.1f}M",
                     f"{t['micro_f1']:.2f}", f"{t['macro_f1']:.2f}"))
        for m in self.models:
            rows.append((m.folder.name, str(len(m.shape.layers)), str(m.shape.heads), str(m.shape.neurons),
                         f"{m.params / 1e6:.1f}M", f"{m.micro_f1:.2f}", f"{m.macro_f1:.2f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                         for r in rows)


def parse_ratio(value: str | float, flag: str) -> Fraction:
    try:
        ratio = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise LabelwiseError(f"`{flag}` {value!r}: not a ratio; write it as 3/4 or 0.75") from None
    if not 0 < ratio <= 1:
        raise LabelwiseError(f"`{flag}` {value}: a ratio must be above 0 and at most 1")
    return ratio


def _whole(ratio: Fraction, count: int, flag: str, unit: str) -> int:
    if (ratio * count).denominator != 1:
        options = ", ".join(str(Fraction(k, count)) for k in range(1, count + 1))
        raise LabelwiseError(f"`{flag}` {ratio}: {ratio} × {count} {unit} is not a whole number; this model has "
                             f"{count} {unit}, so the ratios that work are {options}")
    return int(ratio * count)


def plan_shapes(encoder, widths: Sequence, depths: Sequence, layer_scores: torch.Tensor | None = None
                ) -> list[tuple[Fraction, Fraction, Shape]]:
    """(width, depth, Shape) for every combination but 1 × 1 (the model itself); ratios checked against it."""
    full = full_shape(encoder)
    plans = []
    for d in dict.fromkeys(parse_ratio(v, "depth_mult_list") for v in depths):
        n_layers = _whole(d, len(full.layers), "depth_mult_list", "layers")
        if n_layers < len(full.layers) and layer_scores is not None:  # the most needed layers, in their order
            layers = tuple(sorted(torch.argsort(layer_scores, descending=True, stable=True)[:n_layers].tolist()))
        else:
            layers = full.layers[:n_layers]
        for w in dict.fromkeys(parse_ratio(v, "width_mult_list") for v in widths):
            heads = _whole(w, full.heads, "width_mult_list", "attention heads")
            if (w, d) != (1, 1):
                plans.append((w, d, Shape(heads, max(1, round(float(w) * full.neurons)), layers)))
    if not plans:
        raise LabelwiseError("width 1 × depth 1 is the model itself: give `width_mult_list` or `depth_mult_list` "
                             "ratios below 1")
    return plans


def folder_name(width: Fraction, depth: Fraction) -> str:
    name = f"width_mult_{float(width):g}"
    return name if depth == 1 else f"{name}_depth_mult_{float(depth):g}"


def _inputs(enc, rows, tokenizer, device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in pad_batch(enc, rows, tokenizer.pad_token_id or 0).items()}


def _batches(enc, rows_list, y, tokenizer, device):
    for rows in rows_list:
        yield _inputs(enc, rows, tokenizer, device), torch.from_numpy(y[rows]).to(device)


def _forward(model: MultiLabelModel, inputs: dict) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Logits and the hidden states (embeddings, then each layer) of one batch."""
    out = model.encoder(**inputs, output_hidden_states=True)
    return model.head(model.dropout(model.pool_output(out, inputs["attention_mask"]))), out.hidden_states


def distillation_loss(logits, hidden, teacher_logits, teacher_hidden, layers: Sequence[int]) -> torch.Tensor:
    """Soft BCE on the teacher's probabilities + 0.1 × MSE of the embeddings and each kept layer's output."""
    targets = [teacher_hidden[0]] + [teacher_hidden[i + 1] for i in layers]
    hidden_loss = sum(F.mse_loss(h, t) for h, t in zip(hidden, targets))
    return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(teacher_logits)) + HIDDEN_LOSS_WEIGHT * hidden_loss


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def prune(cfg: PruneConfig | str, **options) -> PruneResult:
    """Prune checkpoint ``cfg.params_path``; one folder per shape in ``cfg.output_dir``; see the module doc."""
    cfg = dataclasses.replace(cfg, **options) if isinstance(cfg, PruneConfig) else PruneConfig(str(cfg), **options)
    cfg.validate()
    with output_lock(cfg.output_dir):  # one run at a time writes the folders
        tracker = open_tracker(cfg.report_to, cfg.output_dir, cfg.logging_dir, Path(cfg.dataset_dir).name)
        try:
            return _prune(cfg, tracker)
        finally:
            tracker.close()


def _prune(cfg: PruneConfig, tracker: Tracker) -> PruneResult:
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    model, tokenizer, meta = load_checkpoint(cfg.params_path)
    ds = load_dataset(cfg.dataset_dir, hierarchy_sep=meta.hierarchy_sep)  # label paths read as the model read them
    check_same_labels(meta.labels, ds.labels, cfg.params_path, Path(cfg.dataset_dir) / "label.txt")
    labels, max_len = ds.labels, cfg.max_seq_length or meta.max_seq_length
    rng = np.random.default_rng(cfg.seed)
    train_set = random_subset(ds.train, cfg.max_train_samples, rng)
    dev_set = random_subset(ds.dev, cfg.max_dev_samples, rng)
    plan_shapes(model.encoder, cfg.width_mult_list, cfg.depth_mult_list)  # bad ratios fail before any work
    output_dir = Path(cfg.output_dir)
    model.to(device)

    # 1. importance on dev, reorder; the teacher is the unchanged model
    dev_enc, y_dev = encode(tokenizer, [e.text for e in dev_set], max_len), multi_hot(dev_set, labels)
    dev_rows = length_grouped_batches(dev_enc.lengths, cfg.eval_batch_size)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    dev_batches = list(_batches(dev_enc, dev_rows, y_dev, tokenizer, device))
    heads, neurons = rank_units(model, dev_batches, loss_fn)
    reorder(model.encoder, heads, neurons)
    layer_scores = None
    if any(parse_ratio(d, "depth_mult_list") < 1 for d in cfg.depth_mult_list):
        layer_scores = rank_layers(model, dev_batches, loss_fn)
        log.info("layer importance (dev loss rise without it): %s",
                 ", ".join(f"{i}: {s:+.3f}" for i, s in enumerate(layer_scores.tolist())))
    plans = plan_shapes(model.encoder, cfg.width_mult_list, cfg.depth_mult_list, layer_scores)
    results = [PrunedModel(w, d, s, output_dir / folder_name(w, d)) for w, d, s in plans]
    for r in results:  # before training: each shape's folder is new, empty, a checkpoint of labelwise's, or allowed
        prepare_output_dir(r.folder, CHECKPOINT, overwrite=cfg.overwrite,
                           inputs={"params_path": cfg.params_path, "dataset_dir": cfg.dataset_dir})
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    # a teacher that blends the TF-IDF baseline: each student's blend weights are fitted again on its own dev scores
    linear = load_blend(cfg.params_path, meta).scorer if meta.blend else None
    full = full_shape(model.encoder)
    _, teacher_metrics = evaluate_model(teacher, tokenizer, meta, dev_set, labels, cfg.eval_batch_size)
    teacher.eval()  # evaluate_model leaves a model in train mode; the teacher never trains (no dropout)
    teacher_row = {"layers": len(full.layers), "heads": full.heads, "neurons": full.neurons,
                   "params": count_params(teacher), "micro_f1": teacher_metrics["micro"]["f1"],
                   "macro_f1": teacher_metrics["macro"]["f1"]}
    log.info("pruning %s (dev micro-F1 %.2f macro-F1 %.2f) to %s: %d epochs, learning rate %.0e", cfg.params_path,
             teacher_row["micro_f1"], teacher_row["macro_f1"], ", ".join(r.folder.name for r in results), cfg.epochs,
             cfg.learning_rate)

    # 2. train every shape against the teacher, all sharing the student's weights
    make_sliceable(model.encoder)
    model.train()
    train_enc = encode(tokenizer, [e.text for e in train_set], max_len)
    steps_per_epoch = len(length_grouped_batches(train_enc.lengths, cfg.batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    loop = StepLoop(model, optimizer, linear_schedule(optimizer, steps_per_epoch * cfg.epochs), max_grad_norm=1.0,
                    logging_steps=cfg.logging_steps, show=cfg.progress)
    run_meta = {"pruned_from": str(cfg.params_path), "teacher": teacher_row,
                "prune_args": {k: (list(map(str, v)) if k.endswith("_list") else v)
                               for k, v in dataclasses.asdict(cfg).items()}}
    loop.tracker = tracker
    tracker.params(run_meta["prune_args"])

    def checkpoint_all(epoch: int) -> None:  # 3. score every shape; cut and save the ones that improved
        for result in results:
            with active_shape(model.encoder, result.shape):
                probs, metrics = evaluate_model(model, tokenizer, meta, dev_set, labels, cfg.eval_batch_size)
            tracker.epoch(loop.step, metrics, prefix=f"dev/{result.folder.name}")
            if metrics["macro"]["f1"] > result.macro_f1:
                result.micro_f1, result.macro_f1 = metrics["micro"]["f1"], metrics["macro"]["f1"]
                result.step = loop.step
                _save_shape(model, tokenizer, meta, result, probs, dev_set, ds.test, epoch, run_meta, cfg, linear)
                log.info("step %d: %s dev micro-F1 %.2f macro-F1 %.2f | best, saved", loop.step, result.folder.name,
                         result.micro_f1, result.macro_f1)

    def shape_losses(rows):  # one distillation loss per shape, each backpropagated before the next shape runs
        inputs = _inputs(train_enc, rows, tokenizer, device)
        with torch.no_grad():
            teacher_logits, teacher_hidden = _forward(teacher, inputs)
        for result in results:  # gradients of every shape add up on the shared weights
            with active_shape(model.encoder, result.shape):
                logits, hidden = _forward(model, inputs)
            name = result.folder.name.replace("width_mult_", "w").replace("_depth_mult_", "d")
            yield name, distillation_loss(logits, hidden, teacher_logits, teacher_hidden, result.shape.layers)

    for epoch in range(1, cfg.epochs + 1):
        order = length_grouped_batches(train_enc.lengths, cfg.batch_size, shuffle=True,
                                       rng=np.random.default_rng(cfg.seed * 1000 + epoch))

        def score_midway(epoch: int = epoch) -> None:  # every save_steps steps; an epoch's end is scored below
            if loop.step % cfg.save_steps == 0 and loop.step % steps_per_epoch:
                checkpoint_all(epoch)

        loop.epoch(order, shape_losses, f"prune epoch {epoch}/{cfg.epochs} ({len(results)} shapes)",
                   after_step=score_midway)
        checkpoint_all(epoch)

    for shape in results:  # each saved shape's thresholds and model card
        if (shape.folder / META_FILE).is_file():
            saved = read_meta(shape.folder)
            tracker.finish(shape.folder, saved.labels, saved.thresholds or [0.5] * len(saved.labels), shape.folder.name)
    result = PruneResult(teacher_row, results, time.perf_counter() - start)
    log.info("pruned in %.0f s; dev at 0.5, the best evaluation of each shape:", result.seconds)
    return result


def _save_shape(model, tokenizer, meta: CheckpointMeta, result: PrunedModel, dev_probs, dev_set, test_set, epoch,
                run_meta: dict, cfg: PruneConfig, linear=None) -> None:
    """Cut ``result.shape`` out of the student, tune its thresholds on dev and write its folder."""
    small = MultiLabelModel(cut(model.encoder, result.shape), len(meta.labels), model.pooling, model.normalize)
    small.head.load_state_dict(model.head.state_dict())
    small.eval()
    result.params = count_params(small)
    shape = {"width_mult": str(result.width), "depth_mult": str(result.depth), "layers": list(result.shape.layers),
             "heads": result.shape.heads, "neurons": result.shape.neurons, "params": result.params,
             "step": result.step}
    # the teacher's metadata (labels, base model, pooling, the label tree's hierarchy_sep, ...), new thresholds,
    # metrics and arguments: a field the teacher has is never lost in the pruned copy
    small_meta = dataclasses.replace(meta, max_seq_length=cfg.max_seq_length or meta.max_seq_length, thresholds=None,
                                     pooling=model.pooling, training_args={**run_meta, "shape": shape}, metrics={})
    # with the teacher's baseline (``linear``) and / or a calibrated teacher: the student's blend weights and
    # temperatures are fitted again on its own dev scores (the teacher's were fitted to the teacher's)
    blend = score_checkpoint(small, tokenizer, small_meta, dev_probs, dev_set, test_set, epoch,
                             batch_size=cfg.eval_batch_size, linear=linear, calibrate=bool(meta.calibration))
    small_meta.metrics["pruning"] = {"teacher": run_meta["teacher"], **shape}
    save_checkpoint(result.folder, small, tokenizer, small_meta, overwrite=cfg.overwrite, blend=blend)
    model.train()


__all__ = ["PruneConfig", "PruneResult", "PrunedModel", "distillation_loss", "folder_name", "parse_ratio",
           "plan_shapes", "prune"]
