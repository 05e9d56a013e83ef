"""Resume state: what a killed ``train`` needs to go on as if it had never stopped (``resume=True``).

It is written after an epoch into ``<save_dir>.train_state`` beside the checkpoint (so swapping in a new best
never touches it), as one folder replaced whole: the weights, the optimiser, the schedule, where the run stands
(epoch, best score, epochs without gain, history), the Python, NumPy and torch random states (dropout draws
from torch's) and the key of the data order. Epoch ``e`` visits the batches in an order drawn from the random
seed and ``e`` alone, so a run that restores all this before its next epoch takes the same steps with the same dropout
as the uninterrupted one: on one CPU process, it ends with the same weights and metrics (tests/test_training.py).

Nothing in it is pickled: tensors are safetensors files, everything else JSON (a folder of an older labelwise,
with ``optimizer.pt`` and ``random.pt``, is read with ``torch.load(weights_only=True)``, which unpickles no
code). The folder goes through the save path like a checkpoint (:func:`prepare_state`): a folder of that name
that labelwise did not write is refused before training, and only labelwise's files are ever removed from it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from labelwise.data.dataset import Example
from labelwise.errors import LabelwiseError, OutputExistsError
from labelwise.files import OutputKind, atomic_dir, atomic_write_json, prepare_output_dir
from labelwise.model.checkpoint import brief

log = logging.getLogger("labelwise")

__all__ = ["TRAIN_STATE", "data_order", "load_state", "prepare_state", "random_states", "remove_state",
           "restore_random_states", "save_state", "state_dir"]

MODEL_FILE, OPTIMIZER_FILE, RANDOM_FILE, STATE_FILE = ("model.safetensors", "optimizer.safetensors",
                                                        "random.safetensors", "state.json")
TRAIN_STATE = OutputKind("resume state", STATE_FILE,
                         (MODEL_FILE, OPTIMIZER_FILE, RANDOM_FILE, STATE_FILE, "optimizer.pt", "random.pt"))


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


def prepare_state(save_dir: str | Path, overwrite: bool = False) -> Path:
    """Check, before training, that ``<save_dir>.train_state`` may hold the resume state: missing, empty, a
    resume state of labelwise's, or (``overwrite``) any folder, whose files of other names stay."""
    folder = state_dir(save_dir)
    try:
        return prepare_output_dir(folder, TRAIN_STATE, overwrite=overwrite)
    except OutputExistsError:
        raise OutputExistsError(f"{folder}: labelwise keeps the resume state of `save_dir` {save_dir} in this "
                                f"folder, but it is not empty and labelwise did not write it (no {STATE_FILE}); "
                                "move it away, choose another `save_dir`, or allow writing into it", [folder]
                                ) from None


def remove_state(folder: Path) -> None:
    """Remove the resume state's files from ``folder``, then the folder if nothing else is in it."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if TRAIN_STATE.owns_name(entry.name) and entry.is_file():
            entry.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def _flat_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser's state_dict as safetensors tensors (``"<param>.<key>"``) and JSON (the rest)."""
    tensors, values = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous()
            else:
                values[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "values": values}


def _optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in [*tensors.items(), *rest["values"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def _flat_random(states: dict) -> tuple[dict[str, torch.Tensor], dict]:
    version, internal, gauss = states["python"]
    kind, keys, pos, has_gauss, np_gauss = states["numpy"]
    tensors = {"torch": states["torch"], "numpy_keys": keys}
    tensors.update({f"cuda.{i}": s for i, s in enumerate(states.get("cuda", []))})
    return tensors, {"python": [version, list(internal), gauss], "numpy": [kind, pos, has_gauss, np_gauss],
                     "cuda_devices": len(states.get("cuda", []))}


def _random_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    kind, pos, has_gauss, gauss = rest["numpy"]
    states = {"python": tuple(rest["python"]), "torch": tensors["torch"],
              "numpy": (kind, tensors["numpy_keys"], pos, has_gauss, gauss)}
    if rest["cuda_devices"]:
        states["cuda"] = [tensors[f"cuda.{i}"] for i in range(rest["cuda_devices"])]
    return states


def save_state(folder: Path, model, optimizer, scheduler, standing: dict, order: dict) -> None:
    """Write the state after an epoch; ``standing``: where the run stands (epoch, best score, history, ...)."""
    optimizer_tensors, optimizer_rest = _flat_optimizer(optimizer.state_dict())
    random_tensors, random_rest = _flat_random(random_states())
    with atomic_dir(folder, TRAIN_STATE) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / MODEL_FILE)
        save_file(optimizer_tensors, tmp / OPTIMIZER_FILE)
        save_file(random_tensors, tmp / RANDOM_FILE)
        atomic_write_json(tmp / STATE_FILE, {**standing, "scheduler": scheduler.state_dict(), "data_order": order,
                                             "optimizer": optimizer_rest, "random": random_rest})


def load_state(folder: Path, model, optimizer, scheduler, order: dict, device: str) -> dict:
    """Restore weights, optimiser and schedule from ``folder``; where the run stood, with its random states.

    The random states come back under ``"random"`` (None in a state written without them); restore them with
    :func:`restore_random_states` right before the next epoch, after everything else that draws random numbers.
    A folder that cannot be read, or that holds another model's state, is one line.
    """
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        model.load_state_dict(load_file(folder / MODEL_FILE, device=device))
        if (folder / OPTIMIZER_FILE).exists():
            optimizer.load_state_dict(_optimizer_state(load_file(folder / OPTIMIZER_FILE, device=device),
                                                       state.pop("optimizer")))
        else:  # an older labelwise's folder
            optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location=device))
        scheduler.load_state_dict(state.pop("scheduler"))
        if (folder / RANDOM_FILE).exists():
            state["random"] = _random_state(load_file(folder / RANDOM_FILE), state["random"])
        else:
            old = folder / "random.pt"
            state["random"] = torch.load(old, weights_only=True) if old.exists() else None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError,
            pickle.UnpicklingError) as err:
        raise LabelwiseError(f"{folder}: the resume state cannot be used ({brief(err)}); delete the folder to start "
                             "over, or train without `resume`") from None
    saved_order = state.pop("data_order", None)
    changed = [k for k in order if saved_order and saved_order.get(k) != order[k]]
    if state["random"] is None or saved_order is None:
        log.warning("--resume: %s has no random states (an older labelwise wrote it): the run goes on, but will not "
                    "end exactly where an uninterrupted one would", folder)
    elif changed:
        log.warning("--resume: the interrupted run had other %s; the run goes on in another data order",
                    ", ".join("training examples" if k == "examples" else k for k in changed))
    return state

