"""Fine-tuning, top to bottom: data, starting model, recipe, baseline, epochs, finish.

``train(TrainConfig(dataset_dir="data"))`` → a checkpoint folder holding the best epoch by dev macro-F1,
with per-label thresholds tuned on dev (written once per improvement, complete), and the same model in
memory as ``result.classifier``. The flags are PaddleNLP's (its train.py); the recipe is ours: see
:mod:`labelwise.training.recipe` and :mod:`labelwise.model.network` (pooling, a head that starts at the label
priors and learns faster). Beyond PaddleNLP: imbalance losses, tuned thresholds, exact resume
(:mod:`labelwise.training.resume`), DDP, length-grouped batches, a linear baseline beside every run, a
contrastive few-shot stage (:mod:`labelwise.training.fewshot`) that hands this loop its starting model.
Each epoch's steps run in :class:`labelwise.training.loop.StepLoop`, shared with pruning and few-shot.

DDP: ``torchrun --nproc_per_node N -m labelwise train ...``; each process takes every N-th batch and evaluates
the (small) dev set itself, so all take the same decisions; only rank 0 writes.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from labelwise.data.dataset import Dataset, Example, check_same_labels, load_dataset, multi_hot
from labelwise.data.tables import columns_of
from labelwise.errors import LabelwiseError
from labelwise.files import CHECKPOINT, atomic_write_json, prepare_output_dir
from labelwise.locks import output_lock
from labelwise.model.checkpoint import META_FILE, CheckpointMeta, load_checkpoint, save_checkpoint
from labelwise.model.device import bf16_auto, bf16_supported, resolve_device
from labelwise.model.encoders import build_model
from labelwise.model.language import pick_encoder
from labelwise.training.adapt import adapt_for_training
from labelwise.model.network import prior_logits
from labelwise.predict.batching import length_grouped_batches, pad_batch
from labelwise.predict.classifier import Classifier, TorchBackend
from labelwise.training.baseline import fit_baseline
from labelwise.training.config import TrainConfig
from labelwise.training.fewshot import FewShotStart, contrastive_stage
from labelwise.training.loop import StepLoop, adamw, estimate_minutes, linear_schedule, random_subset
from labelwise.training.losses import MultiLabelLoss, auto_pos_weight
from labelwise.training.reading import WindowIndex, encoder_limit, plan_reading, pool_window_logits, window_batches
from labelwise.training.recipe import auto_batch_size, auto_epochs, auto_learning_rate, with_defaults
from labelwise.training.resume import (
    data_order,
    load_state,
    prepare_state,
    remove_state,
    restore_random_states,
    save_state,
    state_dir,
)
from labelwise.training.scoring import evaluate_model, log_summary, score_checkpoint
from labelwise.training.tracking import Tracker, open_tracker

log = logging.getLogger("labelwise")

# resume state (weights + optimiser, ~3× the model) is written after the first epoch, then after an epoch only
# when this much time has passed since the last write: short epochs would otherwise spend more time saving
# than training; a crash loses at most this much work plus one epoch.
STATE_INTERVAL_SECONDS = 60.0


@dataclass
class TrainResult:
    save_dir: Path
    best_epoch: int
    metrics: dict
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    train_samples_per_second: float = 0.0
    classifier: Classifier | None = None  # the best epoch, in memory, with its tuned thresholds

    def predict(self, texts, **options):
        """Shortcut for ``result.classifier.predict``."""
        return self.classifier.predict(texts, **options)


def train(cfg: TrainConfig | Dataset | str | os.PathLike, **options) -> TrainResult:
    """Fine-tune an encoder; the best epoch goes to ``save_dir`` and comes back as ``result.classifier``.

    ``train(TrainConfig(dataset_dir="data"))``, ``train("data", epochs=3)`` or, with a loaded
    :class:`~labelwise.data.Dataset`, ``train(dataset, save_dir="checkpoint")``.
    """
    cfg, ds = _config_and_data(cfg, options)
    cfg.validate()
    main = os.environ.get("RANK", "0") == "0"
    with output_lock(cfg.save_dir, enabled=main):  # one run at a time writes save_dir
        tracker = open_tracker(cfg.report_to, cfg.save_dir, cfg.logging_dir, Path(cfg.dataset_dir or "labelwise").name,
                               main)
        try:
            return _train(dataclasses.replace(cfg, batch_size=cfg.batch_size or auto_batch_size(cfg.few_shot)), ds,
                          tracker)
        finally:
            tracker.close()


def _train(cfg: TrainConfig, ds: Dataset | None, tracker: Tracker) -> TrainResult:
    run = _processes(cfg)
    if run.main:  # before any work: save_dir is new, empty, a checkpoint, or --overwrite allows it; never the data
        prepare_output_dir(cfg.save_dir, CHECKPOINT, overwrite=cfg.overwrite, inputs={"dataset_dir": cfg.dataset_dir})
        prepare_state(cfg.save_dir, overwrite=cfg.overwrite)
    torch.manual_seed(cfg.seed)

    # 1. data: the splits, random subsets of them for quick runs
    ds = ds or load_dataset(cfg.dataset_dir, train_file=cfg.train_file, dev_file=cfg.dev_file, test_file=cfg.test_file,
                            label_file=cfg.label_file, hierarchy_sep=cfg.hierarchy_sep, columns=columns_of(cfg))
    train_set, dev_set = _splits(cfg, ds)

    # 2. the starting model: a checkpoint, the few-shot stage's model (its label names join the examples), or new;
    #    with no model_name, the offline encoder for the texts' script (labelwise.model.language)
    model_name, encoder_choice = (cfg.model_name, None) if cfg.init_from_ckpt else \
        pick_encoder(cfg.model_name, (e.text for e in train_set))
    adapted = adapt_for_training(cfg, model_name, run.world) if cfg.adapt_pool else None
    cfg = dataclasses.replace(cfg, model_name=str(adapted.folder) if adapted else model_name)
    start = contrastive_stage(cfg, ds, train_set, run.device, tracker) if cfg.few_shot else None
    train_set = train_set + start.anchors if start else train_set
    y_train = multi_hot(train_set, ds.labels)
    model, tokenizer, base_model = _starting_model(cfg, ds.labels, y_train, start)
    model.to(run.device).train()

    # 3. the recipe: what the settings leave open follows the encoder and the data (windows: training.reading)
    reading, enc = plan_reading(tokenizer, [e.text for e in train_set], cfg.max_seq_length, cfg.long_text,
                                encoder_limit(tokenizer, model))
    cfg = dataclasses.replace(cfg, max_seq_length=reading.max_seq_length, long_text=reading.long_text)
    windows = WindowIndex(enc, len(train_set)) if reading.long_text == "slide" else None
    steps_per_epoch = len(_all_batches(enc, len(train_set), cfg, np.random.default_rng(0))) // run.world or 1
    cfg = _recipe(cfg, model, steps_per_epoch, run)
    choices = {"reading": reading.to_json()}
    if encoder_choice:
        choices["encoder"] = encoder_choice.to_json()
    if adapted:
        choices["adapt"] = {k: adapted.info[k] for k in ("base_model", "objective", "texts", "held_out_loss")}
    meta = CheckpointMeta(labels=ds.labels, max_seq_length=cfg.max_seq_length, base_model=base_model,
                          pooling=model.pooling, training_args=dataclasses.asdict(cfg), hierarchy_sep=ds.hierarchy_sep,
                          long_text=reading.long_text, window_pool=cfg.window_pool, choices=choices)
    loop = _step_loop(cfg, model, steps_per_epoch, run)
    loop.tracker = tracker
    tracker.params(dataclasses.asdict(cfg))
    batch_loss = _batch_loss(cfg, model, tokenizer, enc, y_train, run, windows)
    if run.main:
        some = _all_batches(enc, len(train_set), cfg, np.random.default_rng(0))
        minutes = estimate_minutes(model, batch_loss, some[len(some) // 2], cfg.epochs * steps_per_epoch) \
            if run.world == 1 else float("nan")  # DDP: one process cannot step alone
        log.info("reading: %d texts, %d %s of up to %d tokens (%s), about %.0f min of training steps; %s",
                 reading.texts, reading.windows, "windows" if windows else "rows", reading.max_seq_length,
                 "long texts in windows, logits pooled by " + cfg.window_pool if windows else "longer texts cut",
                 minutes, reading.reason)
        log.info("training %s (%s pooling) on %d examples: %d epochs × %d steps, learning rate %.0e (head %.0e)",
                 base_model, model.pooling, len(train_set), cfg.epochs, steps_per_epoch, cfg.learning_rate,
                 cfg.head_learning_rate)

    # 4. the linear baseline, fitted beside the model and reported with it
    baseline, svm = fit_baseline(train_set, dev_set, ds.test, ds.labels) if cfg.baseline and run.main else (None,) * 2
    linear = svm.scorer() if svm is not None and cfg.blend == "on" else None  # for the blend (model.blend)

    # 5. epochs: each scored on dev, the best saved; a resumed run goes on after the last saved epoch
    order = data_order(cfg.seed, cfg.batch_size, cfg.max_seq_length, run.world, train_set)
    standing = _resume(cfg, run, model, loop, order) if cfg.resume else _Standing()  # last: it restores random states
    first, last_state_write = standing.epoch + 1, time.perf_counter()
    for epoch in range(first, cfg.epochs + 1):
        if cfg.early_stop and standing.bad_epochs >= cfg.early_stop_nums:
            break
        losses = loop.epoch(_epoch_batches(enc, len(train_set), cfg, epoch, run, steps_per_epoch), batch_loss,
                            f"epoch {epoch}/{cfg.epochs}", count=lambda rows: len(rows) * run.world)
        probs, metrics = evaluate_model(model, tokenizer, meta, dev_set, ds.labels, cfg.batch_size)
        improved = standing.record(epoch, losses.get("loss", []), metrics, model)
        tracker.epoch(epoch, metrics)
        if improved and run.main:  # thresholds and metrics first: the checkpoint is written once, complete
            blend = score_checkpoint(model, tokenizer, meta, probs, dev_set, ds.test, epoch, baseline,
                                     tune=cfg.threshold_tuning, batch_size=cfg.batch_size, train_size=len(train_set),
                                     linear=linear, calibrate=cfg.calibration == "auto")
            save_checkpoint(Path(cfg.save_dir), model, tokenizer, meta, overwrite=cfg.overwrite, blend=blend)
        if run.main:
            _log_epoch(standing.history[-1], baseline, improved)
            if epoch == first or time.perf_counter() - last_state_write >= STATE_INTERVAL_SECONDS:
                save_state(state_dir(cfg.save_dir), model, loop.optimizer, loop.scheduler, standing.saved(), order)
                last_state_write = time.perf_counter()

    # 6. finish: the best epoch back in memory, the resume state gone
    result = _finish(cfg, run, model, tokenizer, meta, standing, loop)
    tracker.finish(result.save_dir, meta.labels, result.classifier.thresholds)
    return result


@dataclass
class _Processes:
    """This process among the DDP processes (one without torchrun), and its device."""

    rank: int
    world: int
    device: str

    @property
    def main(self) -> bool:  # the one process that logs and writes
        return self.rank == 0


@dataclass
class _Standing:
    """Where a run stands after an epoch; all but ``best_weights`` goes into the resume state."""

    epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    best_weights: dict | None = None  # the best epoch's weights (a CPU copy), loaded back at the end

    def record(self, epoch: int, losses: list[float], metrics: dict, model) -> bool:
        """Add an epoch's training loss and dev metrics; True when it is the best so far (its weights are kept)."""
        score = metrics["macro"]["f1"]
        self.history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                             "dev_micro_f1": metrics["micro"]["f1"], "dev_macro_f1": score,
                             "dev_accuracy": metrics["accuracy"]})
        self.epoch = epoch
        if not score > self.best_score:
            self.bad_epochs += 1
            return False
        self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
        self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return True

    def saved(self) -> dict:
        return {"epoch": self.epoch, "best_score": self.best_score, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "history": self.history}


def _config_and_data(cfg, options: dict) -> tuple[TrainConfig, Dataset | None]:
    if isinstance(cfg, TrainConfig):
        return (dataclasses.replace(cfg, **options) if options else cfg), None
    if isinstance(cfg, Dataset):
        return TrainConfig(dataset_dir=str(cfg.root or "<dataset>"), **options), cfg
    if isinstance(cfg, (str, os.PathLike)):
        return TrainConfig(dataset_dir=str(cfg), **options), None
    raise TypeError(f"train() takes a TrainConfig, a Dataset or a dataset folder, not {type(cfg).__name__}")


def _processes(cfg: TrainConfig) -> _Processes:
    """Joins the DDP process group when torchrun started several processes; each takes its own GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    device = resolve_device(cfg.device)
    if device.startswith("cuda") and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return _Processes(rank, world, device)


def _splits(cfg: TrainConfig, ds: Dataset) -> tuple[list[Example], list[Example]]:
    """The train and dev examples: all of them, or ``max_train_samples`` / ``max_dev_samples`` drawn at random."""
    empty = [(split, name) for split, name, examples in (("train", cfg.train_file, ds.train),
                                                          ("dev", cfg.dev_file, ds.dev)) if not examples]
    if empty:
        where = (" and ".join(str(Path(ds.root) / name) for _, name in empty) if ds.root else
                 f"the dataset's {' and '.join(split for split, _ in empty)} split")
        raise LabelwiseError(f"{where}: no examples; training needs at least one in the train and one in the dev "
                             "split (a line holds a text, a tab and its labels, separated by commas)")
    train_set = random_subset(ds.train, cfg.max_train_samples, np.random.default_rng(cfg.seed))
    dev_set = random_subset(ds.dev, cfg.max_dev_samples, np.random.default_rng(cfg.seed))
    for name, subset in (("max_train_samples", train_set), ("max_dev_samples", dev_set)):
        if not subset:
            raise LabelwiseError(f"`{name}` {getattr(cfg, name)} leaves no examples; give at least 1")
    return train_set, dev_set


def _starting_model(cfg: TrainConfig, labels: list[str], y_train: np.ndarray, start: FewShotStart | None):
    """(model, tokenizer, base model name) from ``init_from_ckpt``, the few-shot stage or ``model_name``.

    A head that does not come from a checkpoint starts at the label priors (``head_prior``).
    """
    if cfg.init_from_ckpt:
        model, tokenizer, old_meta = load_checkpoint(cfg.init_from_ckpt)
        check_same_labels(old_meta.labels, labels, cfg.init_from_ckpt, Path(cfg.dataset_dir) / cfg.label_file)
        return model, tokenizer, old_meta.base_model
    model, tokenizer = (start.model, start.tokenizer) if start else build_model(cfg.model_name, labels, cfg.pooling)[:2]
    if cfg.head_prior:
        with torch.no_grad():
            model.head.bias.copy_(prior_logits(y_train))
    return model, tokenizer, cfg.model_name


def _recipe(cfg: TrainConfig, model, steps_per_epoch: int, run: _Processes) -> TrainConfig:
    """``cfg`` with the automatic settings filled in (:mod:`labelwise.training.recipe`) and bf16 as it will run."""
    cfg = with_defaults(cfg, model.config.hidden_size, model.pooling, steps_per_epoch)
    use_bf16 = bf16_auto(run.device) if cfg.bf16 is None else bool(cfg.bf16) and bf16_supported(run.device)
    if cfg.bf16 and not use_bf16 and run.main:
        log.warning("bf16: this %s has no bfloat16 support; training in fp32", run.device)
    elif use_bf16 and cfg.bf16 is None and run.main:
        log.info("bf16 autocast on: this CPU has AMX, where it trains ~1.4-1.5x faster (--no-bf16 turns it off)")
    return dataclasses.replace(cfg, bf16=use_bf16)  # the checkpoint records what ran


def _step_loop(cfg: TrainConfig, model, steps_per_epoch: int, run: _Processes) -> StepLoop:
    """AdamW (:func:`~labelwise.training.loop.adamw`), linear warm-up and decay over all epochs, clipping."""
    optimizer = adamw(model, cfg)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = cfg.warmup_steps or (int(cfg.warmup_proportion * total_steps) if cfg.warmup else 0)
    return StepLoop(model, optimizer, linear_schedule(optimizer, total_steps, warmup), max_grad_norm=cfg.max_grad_norm,
                    logging_steps=cfg.logging_steps, show=cfg.progress and run.main)


def _batch_loss(cfg: TrainConfig, model, tokenizer, enc, y_train: np.ndarray, run: _Processes,
                windows: WindowIndex | None = None):
    """The loss of a batch (rows of the training set): the forward pass under autocast, the loss in fp32.

    With ``windows`` a batch row is a text: its windows go through the model and their logits are pooled."""
    autocast = torch.autocast(run.device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.bf16)
    pos_weight = torch.from_numpy(auto_pos_weight(y_train)).to(run.device) if cfg.pos_weight == "auto" else None
    loss_fn = MultiLabelLoss(cfg.loss, pos_weight).to(run.device)
    forward = torch.nn.parallel.DistributedDataParallel(model) if run.world > 1 else model
    pad_id = tokenizer.pad_token_id or 0

    def batch_loss(rows) -> torch.Tensor:
        window_rows, owner = windows.rows(rows) if windows is not None else (rows, None)
        batch = {k: torch.from_numpy(v).to(run.device) for k, v in pad_batch(enc, window_rows, pad_id).items()}
        targets = torch.from_numpy(y_train[rows]).to(run.device)
        with autocast:
            logits = forward(**batch).logits
        logits = logits.float()
        if owner is not None:
            logits = pool_window_logits(logits, torch.from_numpy(owner).to(run.device), len(rows), cfg.window_pool)
        return loss_fn(logits, targets)

    return batch_loss


def _all_batches(enc, n_texts: int, cfg: TrainConfig, rng: np.random.Generator) -> list:
    """One epoch's batches: length-grouped texts, or (windows) whole texts up to ``batch_size`` windows each."""
    if cfg.long_text == "slide":
        return window_batches(enc, n_texts, cfg.batch_size, rng)
    return length_grouped_batches(enc.lengths, cfg.batch_size, shuffle=True, rng=rng)


def _epoch_batches(enc, n_texts: int, cfg: TrainConfig, epoch: int, run: _Processes, steps_per_epoch: int) -> list:
    """This process's ``steps_per_epoch`` batches in ``epoch``, in an order drawn from the random seed and the epoch
    alone. Every process takes the same count (window batches vary in number with the draw; DDP waits for all)."""
    rng = np.random.default_rng(cfg.seed * 1000 + epoch)
    mine = _all_batches(enc, n_texts, cfg, rng)[run.rank::run.world]
    return [mine[i % len(mine)] for i in range(steps_per_epoch)] if mine else []


def _resume(cfg: TrainConfig, run: _Processes, model, loop: StepLoop, order: dict) -> _Standing:
    """Weights, optimiser, schedule and standing of the last saved epoch, then the random states as they were."""
    folder = state_dir(cfg.save_dir)
    if not (folder / "state.json").exists():
        if run.main:
            log.info("--resume: no state in %s, starting from scratch", folder)
        return _Standing()
    state = load_state(folder, model, loop.optimizer, loop.scheduler, order, run.device)
    loop.step = loop.scheduler.last_epoch
    standing = _Standing(**{k: state[k] for k in ("epoch", "best_score", "best_epoch", "bad_epochs", "history")})
    if run.main:
        log.info("resuming after epoch %d (best macro-F1 %.2f at epoch %d)", standing.epoch, standing.best_score,
                 standing.best_epoch)
    if state["random"] is not None:
        restore_random_states(state["random"])
    return standing


def _log_epoch(record: dict, baseline: dict | None, improved: bool) -> None:
    vs_baseline = (f" (baseline {baseline['dev@0.5']['micro_f1']:.2f} / {baseline['dev@0.5']['macro_f1']:.2f})"
                   if baseline else "")
    log.info("epoch %d: loss %.4f | dev micro-F1 %.2f macro-F1 %.2f%s acc %.2f%s", record["epoch"], record["loss"],
             record["dev_micro_f1"], record["dev_macro_f1"], vs_baseline, record["dev_accuracy"],
             " | best, saved" if improved else "")


def _finish(cfg: TrainConfig, run: _Processes, model, tokenizer, meta, standing: _Standing, loop: StepLoop
            ) -> TrainResult:
    """The best epoch's model in memory, the summary logged, the resume state removed; DDP processes part."""
    if run.world > 1:
        torch.distributed.barrier()
    if standing.best_weights is not None:
        model.load_state_dict(standing.best_weights)
    else:  # resumed after the best epoch: the best model is the one on disk
        model, tokenizer, meta = load_checkpoint(cfg.save_dir, run.device)
    model.eval()
    if run.main:
        log_summary(meta.metrics)
        meta.metrics["history"] = standing.history  # every epoch's loss and dev F1: the report's training curves
        atomic_write_json(Path(cfg.save_dir) / META_FILE, meta.to_json())
        remove_state(state_dir(cfg.save_dir))
    if run.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    save_dir = Path(cfg.save_dir)
    return TrainResult(save_dir, standing.best_epoch, meta.metrics, standing.history, loop.seconds,
                       loop.samples / loop.seconds if loop.seconds else 0.0,
                       Classifier(TorchBackend(model, run.device), tokenizer, meta, path=save_dir))


__all__ = ['TrainResult', 'auto_epochs', 'auto_learning_rate', 'bf16_auto', 'bf16_supported', 'train']
