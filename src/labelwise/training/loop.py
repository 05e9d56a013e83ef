"""The optimisation loop that fine-tuning, pruning's distillation and the few-shot contrastive stage share.

:class:`StepLoop` takes each batch through the same steps, in this order::

    zero the gradients → forward and loss (the caller's ``losses(batch)``) → backward → clip → optimiser step
    → schedule step → progress postfix (running loss, learning rate, samples/s)

and counts steps, samples and seconds across epochs. What differs between its users is only the
``losses`` function: fine-tuning's runs the model (under autocast) and the multi-label loss; pruning's yields
one distillation loss per pruned shape, each backpropagated as it comes so that the gradients of every shape
add up on the shared weights while only one graph is alive; few-shot's compares two texts' embeddings. Epoch
order, evaluation and early stop stay with the caller.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from labelwise.progress import progress
from labelwise.training.config import TrainConfig


class StepLoop:
    """One optimiser (and schedule) over several epochs; ``epoch(batches, losses, desc)`` runs one pass."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler=None, *,
                 max_grad_norm: float | None = None, logging_steps: int = 5, show: bool = True):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.max_grad_norm, self.logging_steps, self.show = max_grad_norm, logging_steps, show
        self.step = 0  # optimiser steps taken (all epochs)
        self.samples = 0  # samples seen (all epochs)
        self.seconds = 0.0  # time spent in epochs, evaluation between them excluded
        self.tracker = None  # a labelwise.training.tracking.Tracker: gets the loss and learning rate every few steps

    def epoch(self, batches: Iterable, losses: Callable[[object], torch.Tensor | Iterator[tuple[str, torch.Tensor]]],
              desc: str, *, count: Callable[[object], int] = len,
              after_step: Callable[[], None] | None = None) -> dict[str, list[float]]:
        """One pass over ``batches``; each batch's losses, by name (``"loss"`` for a single tensor).

        ``losses(batch)`` returns a loss tensor, or yields ``(name, loss)`` pairs: each is backpropagated before
        the next is computed. ``count(batch)``: the samples a batch stands for (all processes); ``after_step``
        runs after every optimiser step (pruning scores its shapes there every ``save_steps``).
        """
        bar = progress(batches, desc, self.show)
        running: dict[str, list[float]] = defaultdict(list)
        start = time.perf_counter()
        for batch in bar:
            self.optimizer.zero_grad(set_to_none=True)
            out = losses(batch)
            for name, loss in ([("loss", out)] if isinstance(out, torch.Tensor) else out):
                loss.backward()
                running[name].append(loss.item())
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.step += 1
            self.samples += count(batch)
            if hasattr(bar, "set_postfix") and self.step % self.logging_steps == 0:
                bar.set_postfix(**self._postfix(running, time.perf_counter() - start))
            if self.tracker is not None and self.step % self.logging_steps == 0:
                self.tracker.step(self.step, {k: float(np.mean(v[-self.logging_steps:])) for k, v in running.items()},
                                  self._learning_rate())
            if after_step is not None:
                after_step()
        self.seconds += time.perf_counter() - start
        return dict(running)

    def _learning_rate(self) -> float:
        return self.scheduler.get_last_lr()[0] if self.scheduler is not None else self.optimizer.param_groups[0]["lr"]

    def _postfix(self, running: dict[str, list[float]], epoch_seconds: float) -> dict[str, str]:
        shown = {name: f"{np.mean(values[-self.logging_steps:]):.4f}" for name, values in running.items()}
        lr = self._learning_rate()
        seconds = self.seconds + epoch_seconds
        return {**shown, "lr": f"{lr:.1e}", "samples_s": f"{self.samples / seconds:.0f}" if seconds else "-"}


def random_subset(examples, limit: int | None, rng: np.random.Generator):
    """``limit`` examples drawn at random, in their original order; all of them when ``limit`` is None."""
    if limit is None or limit >= len(examples):
        return examples
    idx = np.sort(rng.choice(len(examples), size=limit, replace=False))
    return [examples[i] for i in idx]


def adamw(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; decay on the encoder's weight matrices only; the head in its own group at the head rate."""
    decay, no_decay, head = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            head.append(param)
        elif name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0},
              {"params": head, "weight_decay": 0.0, "lr": cfg.head_learning_rate}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def linear_schedule(optimizer, total_steps: int, warmup: int = 0):
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total_steps``."""
    def factor(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


__all__ = ['StepLoop', 'adamw', 'estimate_minutes', 'linear_schedule', 'random_subset']


def estimate_minutes(model: torch.nn.Module, batch_loss: Callable, rows, steps: int) -> float:
    """About how many minutes ``steps`` training steps take, from timing forward and backward on batch ``rows``
    (the second of two tries: the first pays for warm-up). Weights, gradients and random state are left as they
    were. Optimiser steps and dev evaluation are not counted."""
    state = torch.get_rng_state()
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        batch_loss(rows).backward()
        seconds.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    torch.set_rng_state(state)
    return seconds[-1] * steps / 60

