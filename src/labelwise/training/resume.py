"""Resume state: what a killed ``train`` needs to go on as if it had never stopped (``resume=True``).

It is written after an epoch into ``<save_dir>.train_state`` beside the checkpoint (so swapping in a new best
never touches it), as one folder replaced whole: the weights, the optimiser, the schedule, where the run stands
(epoch, best score, epochs without gain, history), the Python, NumPy and torch random states (dropout draws
from torch's) and the key of the data order. Epoch ``e`` visits the batches in an order drawn from the seed and
``e`` alone, so a run that restores all this before its next epoch takes the same steps with the same dropout
as the uninterrupted one: on one CPU process, it ends with the same weights and metrics (tests/test_training.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from labelwise.data.dataset import Example
from labelwise.files import atomic_dir, atomic_write_json

log = logging.getLogger("labelwise")

__all__ = ["data_order", "load_state", "random_states", "restore_random_states", "save_state", "state_dir"]


def state_dir(save_dir: str | Path) -> Path:
    save_dir = Path(save_dir)
    return save_dir.with_name(save_dir.name + ".train_state")


def data_order(seed: int, batch_size: int, max_seq_length: int, processes: int, examples: Sequence[Example]) -> dict:
    """What fixes each epoch's batches: the settings that shape them and a digest of the training examples."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(f"{e.text}\t{','.join(e.labels)}\n".encode())
    return {"seed": seed, "batch_size": batch_size, "max_seq_length": max_seq_length, "processes": processes,
            "examples": digest.hexdigest()[:16]}


def random_states() -> dict:
    """Python's, NumPy's and torch's (CPU and every CUDA device's) global random states."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "torch": torch.get_rng_state(),
              "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_state(folder: Path, model, optimizer, scheduler, standing: dict, order: dict) -> None:
    """Write the state after an epoch; ``standing``: where the run stands (epoch, best score, history, ...)."""
    with atomic_dir(folder) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(random_states(), tmp / "random.pt")
        atomic_write_json(tmp / "state.json", {**standing, "scheduler": scheduler.state_dict(), "data_order": order})


def load_state(folder: Path, model, optimizer, scheduler, order: dict, device: str) -> dict:
    """Restore weights, optimiser and schedule from ``folder``; where the run stood, with its random states.

    The random states come back under ``"random"`` (None in a state written without them); restore them with
    :func:`restore_random_states` right before the next epoch, after everything else that draws random numbers.
    """
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    model.load_state_dict(load_file(folder / "model.safetensors", device=device))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location=device))
    scheduler.load_state_dict(state.pop("scheduler"))
    random_file = folder / "random.pt"
    state["random"] = torch.load(random_file, weights_only=True) if random_file.exists() else None
    saved_order = state.pop("data_order", None)
    changed = [k for k in order if saved_order and saved_order.get(k) != order[k]]
    if state["random"] is None or saved_order is None:
        log.warning("--resume: %s has no random states (an older labelwise wrote it): the run goes on, but will not "
                    "end exactly where an uninterrupted one would", folder)
    elif changed:
        log.warning("--resume: the interrupted run had other %s; the run goes on in another data order",
                    ", ".join("training examples" if k == "examples" else k for k in changed))
    return state
