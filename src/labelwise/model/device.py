"""Device names: ``None``/``auto`` → a GPU when there is one, ``gpu``/``gpu:N`` (PaddleNLP's) → ``cuda[:N]``;
and whether bfloat16 runs natively (and pays) on the device."""
from __future__ import annotations

from pathlib import Path

from labelwise.errors import LabelwiseError

__all__ = ['bf16_auto', 'bf16_supported', 'resolve_device']


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = device.replace("gpu", "cuda", 1) if device == "gpu" or device.startswith("gpu:") else device
    try:
        kind = torch.device(name).type
    except (RuntimeError, TypeError, ValueError):
        raise LabelwiseError(f"`device` {device!r}: not a device; use cpu, gpu or gpu:N (cuda[:N] works too)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise LabelwiseError(f"`device` {device}: no GPU is available here; set `device` to cpu")
    return name


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux); None where that cannot be read."""
    try:
        line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return None
    return set(line.split(":", 1)[-1].split())


def bf16_supported(device: str) -> bool:
    """Whether bfloat16 autocast runs natively here: a CUDA GPU that supports it, or a CPU with AVX-512 BF16 / AMX."""
    import torch

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
