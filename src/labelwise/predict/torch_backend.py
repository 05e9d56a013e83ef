"""The PyTorch backend: a checkpoint's model (``labelwise train``, ``labelwise prune``), eager, without gradients."""
from __future__ import annotations

import contextlib

import numpy as np

from labelwise.model.checkpoint import explain_folder, is_checkpoint
from labelwise.predict.backends import Kind, Opened, register

__all__ = ["KIND", "TorchBackend"]


class TorchBackend:
    """Runs a transformers model in PyTorch (eager, no grad); ``precision`` bf16 runs it under autocast (bf16
    matrix products: AMX or AVX-512 BF16 on a CPU, tensor cores on a GPU), fp32 otherwise."""

    name = "torch"

    def __init__(self, model, device: str = "cpu", num_threads: int | None = None, precision: str = "fp32"):
        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        self.model, self.device, self.precision = model.to(device).eval(), device, precision
        import inspect

        self.input_names = set(inspect.signature(self.model.forward).parameters)

    def _run(self, method, batch: dict[str, np.ndarray]) -> np.ndarray:
        """``method`` of the model on the batch's tensors (the inputs its forward takes), as float32 numpy."""
        import torch

        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items() if k in self.input_names}
        autocast = torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16) \
            if self.precision == "bf16" else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            return method(**inputs).float().cpu().numpy()

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self._run(lambda **inputs: self.model(**inputs).logits, batch)

    def head(self):
        """The final linear layer (hidden → labels): its input is the text's pooled representation."""
        return self.model.head

    def features(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Pooled representation of each row: the input of the final linear layer."""
        return self._run(self.model.pooled, batch)


def _open(folder, device=None, num_threads=None, precision="fp32") -> Opened:
    from labelwise.model.checkpoint import load_checkpoint
    from labelwise.model.device import resolve_device

    model, tokenizer, meta = load_checkpoint(folder)  # checks every file, checksums included
    return Opened(TorchBackend(model, resolve_device(device), num_threads, precision), tokenizer, meta)


KIND = register(Kind("torch", "PyTorch checkpoint", recognise=is_checkpoint, open=_open, precisions=("fp32", "bf16"),
                     abilities=frozenset({"features", "gradients"}), priority=20,
                     make="`labelwise train` or `labelwise prune`", explain=explain_folder))
