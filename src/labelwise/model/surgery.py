"""Shape surgery on BERT-style encoders: the mechanics under :mod:`labelwise.pruning`.

Units: a *head* is one attention head (``head_size`` rows of query, key and value, as many columns of the
attention output projection); a *neuron* is one unit of a feed-forward block (a row of ``intermediate.dense``,
a column of ``output.dense``); a *layer* is a whole transformer block.

* :func:`rank_units` scores every head and neuron by the gradient of an all-ones gate on it (how much the
  loss moves when it is switched off; Michel et al. 2019, the importance PaddleNLP's DynaBERT step uses);
  :func:`rank_layers` scores layers by how much the loss rises when one is skipped;
* :func:`reorder` permutes heads and neurons so the most important come first (outputs unchanged);
* :func:`make_sliceable` + :func:`active_shape` run the encoder on its first heads/neurons and some of its
  layers, sharing the weights: how every width trains in the same step;
* :func:`cut` copies one shape out as a smaller dense encoder; :func:`load_cut_encoder` reads one back.

A cut encoder is a transformers folder whose config.json keeps the stock fields (``num_hidden_layers``,
``intermediate_size``, ``num_attention_heads`` = heads kept) and, when the heads no longer fill the hidden
size, adds ``attention_head_size``: 6 heads of 64 on a 512-wide model is something ``BertConfig`` cannot say,
so stock ``AutoModel`` refuses such a folder (size mismatch) rather than load it wrong; see docs/pruning.md.
"""
from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from labelwise.errors import LabelwiseError

HEAD_SIZE_FIELD = "attention_head_size"  # config.json field of a cut encoder whose heads do not fill the width

__all__ = ["Shape", "full_shape", "rank_units", "rank_layers", "reorder", "make_sliceable", "active_shape", "cut",
           "load_cut_encoder", "HEAD_SIZE_FIELD"]


@dataclass(frozen=True)
class Shape:
    """What a (sub)model keeps: heads and neurons per layer, and which layers (indices into the full model)."""

    heads: int
    neurons: int
    layers: tuple[int, ...]


def _layers(encoder) -> torch.nn.ModuleList:
    """The encoder's transformer blocks; one clear error for layouts other than BERT's."""
    try:
        layers = encoder.encoder.layer
        first = layers[0]
        _ = (first.attention.self.query, first.attention.self.attention_head_size, first.attention.output.dense,
             first.intermediate.dense, first.output.dense)
    except (AttributeError, IndexError, TypeError):
        raise LabelwiseError(f"pruning works on BERT-style encoders (BERT, ERNIE, RoBERTa, MiniLM, m3e); "
                             f"{type(encoder).__name__} is laid out differently") from None
    return layers


def head_size(encoder) -> int:
    return _layers(encoder)[0].attention.self.attention_head_size


def full_shape(encoder) -> Shape:
    layers = _layers(encoder)
    return Shape(heads=layers[0].attention.self.query.out_features // head_size(encoder),
                 neurons=layers[0].intermediate.dense.out_features, layers=tuple(range(len(layers))))


# ---- importance -------------------------------------------------------------------------------------------------

def _gate_hook(gate: torch.Tensor, layer: int, group: int):
    """Forward pre-hook multiplying a Linear's input by ``gate[layer]``, each gate value covering ``group`` inputs."""
    def hook(module, args):
        x = args[0]
        gated = (x.reshape(*x.shape[:-1], -1, group) * gate[layer][:, None]).reshape(x.shape)
        return (gated, *args[1:])
    return hook


def rank_units(model, batches, loss_fn) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance of each head ``[layers, heads]`` and neuron ``[layers, neurons]``.

    ``model`` is a :class:`~labelwise.model.network.MultiLabelModel`; ``batches`` yields (inputs, targets);
    importance = |d loss / d gate| of an all-ones gate on the unit, summed over batches (dropout off).
    """
    layers, shape, size = _layers(model.encoder), full_shape(model.encoder), head_size(model.encoder)
    device = next(model.parameters()).device
    head_gate = torch.ones(len(layers), shape.heads, requires_grad=True, device=device)
    neuron_gate = torch.ones(len(layers), shape.neurons, requires_grad=True, device=device)
    hooks = []
    for i, layer in enumerate(layers):
        hooks.append(layer.attention.output.dense.register_forward_pre_hook(_gate_hook(head_gate, i, size)))
        hooks.append(layer.output.dense.register_forward_pre_hook(_gate_hook(neuron_gate, i, 1)))
    heads, neurons = torch.zeros_like(head_gate), torch.zeros_like(neuron_gate)
    was_training = model.training
    model.eval()
    try:
        for inputs, targets in batches:
            loss = loss_fn(model(**inputs).logits, targets)
            head_grad, neuron_grad = torch.autograd.grad(loss, [head_gate, neuron_gate])
            heads += head_grad.abs()
            neurons += neuron_grad.abs()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return heads, neurons


@torch.no_grad()
def rank_layers(model, batches, loss_fn) -> torch.Tensor:
    """Per layer: mean loss with that layer skipped minus the loss with all layers (higher = more needed)."""
    full = full_shape(model.encoder)
    was_training = model.training
    model.eval()

    def mean_loss(shape: Shape) -> float:
        with active_shape(model.encoder, shape):
            return sum(float(loss_fn(model(**inputs).logits, targets)) for inputs, targets in batches) / len(batches)

    try:
        base = mean_loss(full)
        scores = [mean_loss(Shape(full.heads, full.neurons, tuple(j for j in full.layers if j != i))) - base
                  for i in full.layers]
    finally:
        model.train(was_training)
    return torch.tensor(scores)


# ---- reorder, slice, cut ----------------------------------------------------------------------------------------

def _head_rows(order: torch.Tensor, size: int) -> torch.Tensor:
    """Weight rows of the heads in ``order`` (each head is ``size`` consecutive rows)."""
    return (order[:, None] * size + torch.arange(size, device=order.device)).reshape(-1)


@torch.no_grad()
def _permute(linear: torch.nn.Linear, index: torch.Tensor, dim: int) -> None:
    linear.weight.copy_(linear.weight.index_select(dim, index))
    if dim == 0 and linear.bias is not None:
        linear.bias.copy_(linear.bias.index_select(0, index))


def reorder(encoder, head_scores: torch.Tensor, neuron_scores: torch.Tensor) -> None:
    """Permute each layer's heads and neurons, most important first, in place (the outputs do not change)."""
    size, device = head_size(encoder), encoder.get_input_embeddings().weight.device
    head_scores, neuron_scores = head_scores.to(device), neuron_scores.to(device)
    for i, layer in enumerate(_layers(encoder)):
        rows = _head_rows(torch.argsort(head_scores[i], descending=True, stable=True), size)
        attention = layer.attention.self
        for linear in (attention.query, attention.key, attention.value):
            _permute(linear, rows, 0)
        _permute(layer.attention.output.dense, rows, 1)
        neurons = torch.argsort(neuron_scores[i], descending=True, stable=True)
        _permute(layer.intermediate.dense, neurons, 0)
        _permute(layer.output.dense, neurons, 1)


class SlicedLinear(torch.nn.Linear):
    """A Linear that uses only its first ``rows`` outputs and first ``cols`` inputs (``None``: all of them)."""

    rows: int | None = None
    cols: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias[: self.rows] if self.bias is not None else None
        return F.linear(x, self.weight[: self.rows, : self.cols], bias)


def _prunable(layer) -> list[tuple[torch.nn.Module, str, str, str]]:
    """(parent, attribute, unit, side that shrinks) for the six projections width pruning touches."""
    attention = layer.attention.self
    return [(attention, "query", "head", "rows"), (attention, "key", "head", "rows"),
            (attention, "value", "head", "rows"), (layer.attention.output, "dense", "head", "cols"),
            (layer.intermediate, "dense", "neuron", "rows"), (layer.output, "dense", "neuron", "cols")]


def make_sliceable(encoder) -> None:
    """Swap the prunable projections for :class:`SlicedLinear` views of the same parameters, in place."""
    for layer in _layers(encoder):
        for parent, name, _, _ in _prunable(layer):
            old = getattr(parent, name)
            if isinstance(old, SlicedLinear):
                continue
            new = SlicedLinear(old.in_features, old.out_features, bias=old.bias is not None, device="meta")
            new.weight, new.bias = old.weight, old.bias
            setattr(parent, name, new)


def _set_slices(layer, heads: int | None, neurons: int | None, size: int) -> None:
    counts = {"head": heads * size if heads is not None else None, "neuron": neurons}
    for parent, name, unit, side in _prunable(layer):
        linear = getattr(parent, name)
        if not isinstance(linear, SlicedLinear):
            if heads is None and neurons is None:
                continue
            raise LabelwiseError("a reduced width needs make_sliceable(encoder) first")
        linear.rows, linear.cols = (counts[unit], None) if side == "rows" else (None, counts[unit])


@contextmanager
def active_shape(encoder, shape: Shape):
    """Within the block, ``encoder`` runs as the submodel ``shape`` (its first heads/neurons, those layers)."""
    full, size, layers = full_shape(encoder), head_size(encoder), _layers(encoder)
    heads = None if shape.heads == full.heads else shape.heads
    neurons = None if shape.neurons == full.neurons else shape.neurons
    try:
        for index in shape.layers:
            _set_slices(layers[index], heads, neurons, size)
        encoder.encoder.layer = torch.nn.ModuleList([layers[i] for i in shape.layers])
        yield encoder
    finally:
        encoder.encoder.layer = layers
        for layer in layers:
            _set_slices(layer, None, None, size)


def _dense(linear: torch.nn.Linear, rows: int | None = None, cols: int | None = None) -> torch.nn.Linear:
    weight = linear.weight.detach()[:rows, :cols]
    out = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None, device=weight.device,
                          dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if linear.bias is not None:
            out.bias.copy_(linear.bias.detach()[:rows])
    return out


def cut(encoder, shape: Shape):
    """A new, smaller dense encoder: ``shape`` copied out of ``encoder`` (which is left as it is)."""
    size, hidden = head_size(encoder), encoder.config.hidden_size
    new = copy.deepcopy(encoder)
    kept = [new.encoder.layer[i] for i in shape.layers]
    for layer in kept:
        attention = layer.attention.self
        for name in ("query", "key", "value"):
            setattr(attention, name, _dense(getattr(attention, name), rows=shape.heads * size))
        attention.num_attention_heads, attention.all_head_size = shape.heads, shape.heads * size
        layer.attention.output.dense = _dense(layer.attention.output.dense, cols=shape.heads * size)
        layer.intermediate.dense = _dense(layer.intermediate.dense, rows=shape.neurons)
        layer.output.dense = _dense(layer.output.dense, cols=shape.neurons)
    new.encoder.layer = torch.nn.ModuleList(kept)
    config = new.config
    config.num_hidden_layers, config.intermediate_size, config.num_attention_heads = (
        len(kept), shape.neurons, shape.heads)
    if shape.heads * size != hidden:
        setattr(config, HEAD_SIZE_FIELD, size)
    elif hasattr(config, HEAD_SIZE_FIELD):
        delattr(config, HEAD_SIZE_FIELD)
    return new


def load_cut_encoder(folder: str | Path, add_pooling_layer: bool):
    """Load a cut encoder folder (one with ``attention_head_size`` in config.json); None for stock folders."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    folder = Path(folder)
    try:  # a glance at config.json: stock folders (almost every load) go back to AutoModel untouched
        if HEAD_SIZE_FIELD not in json.loads((folder / "config.json").read_text(encoding="utf-8")):
            return None
    except (OSError, ValueError):
        return None  # AutoModel will say what is wrong with the folder
    config = AutoConfig.from_pretrained(folder)
    size = getattr(config, HEAD_SIZE_FIELD)
    heads = config.num_attention_heads
    config.num_attention_heads = config.hidden_size // size  # build at full width, then shrink the projections
    try:
        encoder = AutoModel.from_config(config, add_pooling_layer=add_pooling_layer)
    except TypeError:
        encoder = AutoModel.from_config(config)
    for layer in _layers(encoder):
        attention = layer.attention.self
        for name in ("query", "key", "value"):
            setattr(attention, name, torch.nn.Linear(config.hidden_size, heads * size))
        attention.num_attention_heads, attention.all_head_size = heads, heads * size
        layer.attention.output.dense = torch.nn.Linear(heads * size, config.hidden_size)
    config.num_attention_heads = heads
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise LabelwiseError(f"{folder}: no model.safetensors beside its config.json; the folder is damaged")
    missing, unexpected = encoder.load_state_dict(load_file(weights), strict=False)
    missing, unexpected = ([k for k in keys if not k.startswith("pooler.")] for keys in (missing, unexpected))
    if missing or unexpected:
        raise LabelwiseError(f"{weights}: does not fit its config.json (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]}); the folder is damaged, prune again")
    return encoder.eval()
