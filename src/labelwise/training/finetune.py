"""Fine-tuning: the loop, top to bottom.

``train(TrainConfig(dataset_dir="data"))`` → a checkpoint folder holding the best epoch by dev macro-F1,
with per-label thresholds tuned on dev (written once per improvement, complete), and the same model in
memory as ``result.classifier``. The flags are PaddleNLP's (its train.py); the recipe is ours: see
:mod:`labelwise.training.recipe` and :mod:`labelwise.model.network` (pooling, a head that starts at the label priors and
learns faster). Beyond PaddleNLP: imbalance losses, tuned thresholds, resume, DDP, length-grouped batches,
a linear baseline beside every run.

Multi-process (DDP) runs with ``torchrun --nproc_per_node N -m labelwise train ...``: each process takes
every N-th batch; every process evaluates the (small) dev set itself, so all take the same decisions,
and only rank 0 writes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from labelwise.data.dataset import Dataset, check_same_labels, load_dataset, multi_hot
from labelwise.errors import LabelwiseError
from labelwise.files import atomic_dir, atomic_write_json
from labelwise.model.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from labelwise.model.device import resolve_device
from labelwise.model.encoders import build_model
from labelwise.model.network import prior_logits
from labelwise.predict.batching import encode, length_grouped_batches, pad_batch
from labelwise.predict.classifier import Classifier, TorchBackend
from labelwise.progress import progress
from labelwise.training.baseline import fit_baseline
from labelwise.training.config import TrainConfig
from labelwise.training.loop import adamw, linear_schedule, random_subset
from labelwise.training.losses import MultiLabelLoss, auto_pos_weight
from labelwise.training.recipe import auto_batch_size, auto_epochs, auto_learning_rate, with_defaults
from labelwise.training.scoring import evaluate_model, log_summary, score_checkpoint

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


def _state_dir(save_dir: Path) -> Path:
    """Resume state lives beside the checkpoint, so swapping in a new best never touches it."""
    return save_dir.with_name(save_dir.name + ".train_state")


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def train(cfg: TrainConfig | Dataset | str | os.PathLike, **options) -> TrainResult:
    """Fine-tune an encoder; the best epoch goes to ``save_dir`` and comes back as ``result.classifier``.

    ``train(TrainConfig(dataset_dir="data"))``, ``train("data", epochs=3)`` or, with a loaded
    :class:`~labelwise.data.Dataset`, ``train(dataset, save_dir="checkpoint")``.
    """
    cfg, ds = _config_and_data(cfg, options)
    cfg.validate()
    cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size or auto_batch_size(cfg.few_shot))
    rank, world = _distributed()
    main_process = rank == 0
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    if device.startswith("cuda") and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"

    ds = ds or load_dataset(cfg.dataset_dir, train_file=cfg.train_file, dev_file=cfg.dev_file,
                            test_file=cfg.test_file, label_file=cfg.label_file)
    labels = ds.labels
    train_set = random_subset(ds.train, cfg.max_train_samples, np.random.default_rng(cfg.seed))
    dev_set = random_subset(ds.dev, cfg.max_dev_samples, np.random.default_rng(cfg.seed))
    if not train_set or not dev_set:
        raise LabelwiseError(f"{cfg.dataset_dir}: the train and dev splits both need at least one example")
    save_dir, state_dir = Path(cfg.save_dir), _state_dir(Path(cfg.save_dir))
    few_shot_model = None
    if cfg.few_shot:  # contrastive pairs first; label names join the training examples (labelwise.training.fewshot)
        from labelwise.training.fewshot import few_shot_start

        few_shot_model, train_set = few_shot_start(cfg, ds, train_set)
    y_train = multi_hot(train_set, labels)
    if cfg.init_from_ckpt:
        model, tokenizer, old_meta = load_checkpoint(cfg.init_from_ckpt)
        check_same_labels(old_meta.labels, labels, cfg.init_from_ckpt, Path(cfg.dataset_dir) / cfg.label_file)
        base_model = old_meta.base_model
    else:
        model, tokenizer, _ = few_shot_model or build_model(cfg.model_name, labels, cfg.pooling)
        if cfg.head_prior:
            with torch.no_grad():  # the head starts at the label priors
                model.head.bias.copy_(prior_logits(y_train))
        base_model = cfg.model_name
    model.to(device).train()

    enc = encode(tokenizer, [e.text for e in train_set], cfg.max_seq_length)
    lengths = enc.lengths
    steps_per_epoch = len(length_grouped_batches(lengths, cfg.batch_size)) // world or 1
    cfg = with_defaults(cfg, model.config.hidden_size, model.pooling, steps_per_epoch)
    use_bf16 = bf16_auto(device) if cfg.bf16 is None else bool(cfg.bf16) and bf16_supported(device)
    if cfg.bf16 and not use_bf16 and main_process:
        log.warning("bf16: this %s has no bfloat16 support; training in fp32", device)
    elif use_bf16 and cfg.bf16 is None and main_process:
        log.info("bf16 autocast on: this CPU has AMX, where it trains ~1.4-1.5x faster (--no-bf16 turns it off)")
    cfg = dataclasses.replace(cfg, bf16=use_bf16)  # the checkpoint records what ran
    meta = CheckpointMeta(labels=labels, max_seq_length=cfg.max_seq_length, base_model=base_model,
                          pooling=model.pooling, training_args=dataclasses.asdict(cfg))
    if main_process:
        log.info("training %s (%s pooling) on %d examples: %d epochs × %d steps, learning rate %.0e (head %.0e)",
                 base_model, model.pooling, len(train_set), cfg.epochs, steps_per_epoch, cfg.learning_rate,
                 cfg.head_learning_rate)
    baseline = fit_baseline(train_set, dev_set, ds.test, labels) if cfg.baseline and main_process else None
    vs_baseline = (f" (baseline {baseline['dev@0.5']['micro_f1']:.2f} / {baseline['dev@0.5']['macro_f1']:.2f})"
                   if baseline else "")

    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16)
    pos_weight = torch.from_numpy(auto_pos_weight(y_train)).to(device) if cfg.pos_weight == "auto" else None
    loss_fn = MultiLabelLoss(cfg.loss, pos_weight).to(device)
    optimizer = adamw(model, cfg)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = cfg.warmup_steps or (int(cfg.warmup_proportion * total_steps) if cfg.warmup else 0)
    scheduler = linear_schedule(optimizer, total_steps, warmup)
    ddp_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    # resume: restore weights, optimiser, schedule and bookkeeping of the last finished epoch
    start_epoch, best_score, best_epoch, bad_epochs, history = 1, -1.0, 0, 0, []
    best_state: dict | None = None  # the best epoch's weights (CPU copy), loaded back at the end
    if cfg.resume and (state_dir / "state.json").exists():
        state = json.loads((state_dir / "state.json").read_text())
        model.load_state_dict(load_file(state_dir / "model.safetensors", device=device))
        optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True, map_location=device))
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_score, best_epoch = state["epoch"] + 1, state["best_score"], state["best_epoch"]
        bad_epochs, history = state["bad_epochs"], state["history"]
        if main_process:
            log.info("resuming after epoch %d (best macro-F1 %.2f at epoch %d)", state["epoch"], best_score, best_epoch)
    elif cfg.resume and main_process:
        log.info("--resume: no state in %s, starting from scratch", state_dir)

    train_seconds, samples_seen, step = 0.0, 0, scheduler.last_epoch
    last_state_write = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs + 1):
        if cfg.early_stop and bad_epochs >= cfg.early_stop_nums:
            break
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)  # same order when an epoch is redone
        batches = length_grouped_batches(lengths, cfg.batch_size, shuffle=True, rng=rng)
        batches = batches[rank::world][:steps_per_epoch]
        bar = progress(batches, f"epoch {epoch}/{cfg.epochs}", cfg.progress and main_process)
        epoch_start, running = time.perf_counter(), []
        for rows in bar:
            batch = {k: torch.from_numpy(v).to(device) for k, v in pad_batch(enc, rows, tokenizer.pad_token_id or 0).items()}
            targets = torch.from_numpy(y_train[rows]).to(device)
            with autocast:
                logits = ddp_model(**batch).logits
            loss = loss_fn(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            samples_seen += len(rows) * world
            running.append(loss.item())
            if hasattr(bar, "set_postfix") and step % cfg.logging_steps == 0:
                seconds = train_seconds + time.perf_counter() - epoch_start
                bar.set_postfix(loss=f"{np.mean(running[-cfg.logging_steps:]):.4f}",
                                lr=f"{scheduler.get_last_lr()[0]:.1e}", samples_s=f"{samples_seen / seconds:.0f}")
        train_seconds += time.perf_counter() - epoch_start

        probs, metrics = evaluate_model(model, tokenizer, meta, dev_set, labels, cfg.batch_size)
        score = metrics["macro"]["f1"]
        record = {"epoch": epoch, "loss": float(np.mean(running)) if running else float("nan"),
                  "dev_micro_f1": metrics["micro"]["f1"], "dev_macro_f1": score, "dev_accuracy": metrics["accuracy"]}
        history.append(record)
        improved = score > best_score
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if main_process:  # thresholds and metrics first: the checkpoint is written once, complete
                score_checkpoint(model, tokenizer, meta, probs, dev_set, ds.test, epoch, baseline,
                                 tune=cfg.threshold_tuning, batch_size=cfg.batch_size)
                save_checkpoint(save_dir, model, tokenizer, meta)
        else:
            bad_epochs += 1
        if main_process:
            log.info("epoch %d: loss %.4f | dev micro-F1 %.2f macro-F1 %.2f%s acc %.2f%s", epoch, record["loss"],
                     record["dev_micro_f1"], score, vs_baseline, record["dev_accuracy"],
                     " | best, saved" if improved else "")
            if time.perf_counter() - last_state_write >= STATE_INTERVAL_SECONDS or epoch == start_epoch:
                _save_state(state_dir, model, optimizer, scheduler, epoch, best_score, best_epoch, bad_epochs, history)
                last_state_write = time.perf_counter()

    if world > 1:
        torch.distributed.barrier()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:  # resumed after the last epoch: the best model is the one on disk
        model, tokenizer, meta = load_checkpoint(save_dir, device)
    model.eval()
    if main_process:
        log_summary(meta.metrics)
        shutil.rmtree(state_dir, ignore_errors=True)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return TrainResult(save_dir, best_epoch, meta.metrics, history, train_seconds,
                       samples_seen / train_seconds if train_seconds else 0.0,
                       Classifier(TorchBackend(model, device), tokenizer, meta, path=save_dir))


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux); None where that cannot be read."""
    try:
        line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return None
    return set(line.split(":", 1)[-1].split())


def bf16_supported(device: str) -> bool:
    """Whether bfloat16 autocast runs natively here: a CUDA GPU that supports it, or a CPU with AVX-512 BF16 / AMX."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    flags = _cpu_flags()  # oneDNN also "supports" bf16 on plain AVX-512 by emulation, slower than fp32: ask the CPU
    if flags is None:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def bf16_auto(device: str) -> bool:
    """The default (``bf16=None``): bf16 only on a CPU with AMX tiles, the one place it was measured faster.

    Measured (benchmarks/RESULTS.md): a Xeon with AMX trained m3e-small 1.53× faster in bf16 (2 threads; 1.39×
    with 8) at equal dev F1; an AVX-512 BF16 Xeon without AMX 0.87×, an H200 GPU 0.90×.
    """
    return not device.startswith("cuda") and "amx_bf16" in (_cpu_flags() or set())


def _config_and_data(cfg, options: dict) -> tuple[TrainConfig, Dataset | None]:
    if isinstance(cfg, TrainConfig):
        return (dataclasses.replace(cfg, **options) if options else cfg), None
    if isinstance(cfg, Dataset):
        return TrainConfig(dataset_dir=str(cfg.root or "<dataset>"), **options), cfg
    if isinstance(cfg, (str, os.PathLike)):
        return TrainConfig(dataset_dir=str(cfg), **options), None
    raise TypeError(f"train() takes a TrainConfig, a Dataset or a dataset folder, not {type(cfg).__name__}")


def _save_state(state_dir, model, optimizer, scheduler, epoch, best_score, best_epoch, bad_epochs, history):
    with atomic_dir(state_dir) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        atomic_write_json(tmp / "state.json", {
            "epoch": epoch, "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
            "history": history, "scheduler": scheduler.state_dict()})


__all__ = ['TrainResult', 'train', 'auto_epochs', 'auto_learning_rate', 'bf16_supported', 'bf16_auto']
