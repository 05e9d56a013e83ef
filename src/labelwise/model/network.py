"""The classifier network: a transformers encoder, a pooling step, one linear layer with a sigmoid per label.

``MultiLabelModel(encoder, num_labels, pooling)`` is a plain ``torch.nn.Module``. Its parts are saved apart
(see :mod:`labelwise.model.checkpoint`): the encoder as a folder ``AutoModel`` loads, the head as ``head.safetensors``,
the pooling in ``labelwise.json``, so plain transformers can recompute its probabilities in a few lines.

Pooling (``--pooling``):

* ``mean``: the average of the last layer's vectors over the real (unmasked) tokens — what sentence-embedding
  encoders such as m3e-small and all-MiniLM were trained to produce;
* ``cls``: the [CLS] vector through the encoder's pooler (dense + tanh) when it has one, as
  ``BertForSequenceClassification`` and PaddleNLP's ``ErnieForSequenceClassification`` do; the raw [CLS] vector
  otherwise.

With ``normalize`` (few-shot and zero-shot models, ``labelwise.json`` ``"normalize": true``) the pooled vector
is scaled to unit length before the head, so each logit is a scaled cosine similarity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["MultiLabelModel", "ClassifierOutput", "pool", "prior_logits"]


@dataclass
class ClassifierOutput:
    logits: torch.Tensor


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, pooling: str,
         pooler_output: torch.Tensor | None = None) -> torch.Tensor:
    """One vector per row: masked mean over real tokens, or the (pooled) [CLS] vector."""
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
        return (last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if pooling == "cls":
        return pooler_output if pooler_output is not None else last_hidden_state[:, 0]
    raise ValueError(f"unknown pooling {pooling!r}; use mean or cls")


def prior_logits(y: "np.ndarray", smoothing: float = 0.5) -> torch.Tensor:  # noqa: F821 (numpy array)
    """log(p / (1 - p)) of each label's (smoothed) training frequency: the head's starting bias.

    A head that starts at the label priors predicts each label's base rate from the first step, instead of
    0.5 everywhere; the early gradient then goes into telling examples apart rather than into learning that
    most labels are rare.
    """
    y = torch.as_tensor(y, dtype=torch.float64)
    p = (y.sum(0) + smoothing) / (y.shape[0] + 2 * smoothing)
    return torch.log(p / (1 - p)).float()


class MultiLabelModel(torch.nn.Module):
    """Encoder → pooling → dropout → linear head (one logit per label)."""

    def __init__(self, encoder, num_labels: int, pooling: str = "mean", normalize: bool = False):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"unknown pooling {pooling!r}; use mean or cls")
        self.encoder, self.pooling, self.num_labels = encoder, pooling, num_labels
        self.normalize = normalize  # unit-length text vectors: the head's logits are scaled cosines (few/zero-shot)
        config = encoder.config
        self.dropout = torch.nn.Dropout(getattr(config, "hidden_dropout_prob", None) or 0.1)
        self.head = torch.nn.Linear(config.hidden_size, num_labels)
        torch.nn.init.normal_(self.head.weight, std=getattr(config, "initializer_range", 0.02))
        torch.nn.init.zeros_(self.head.bias)

    @property
    def config(self):
        return self.encoder.config

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def set_attn_implementation(self, name: str) -> None:
        if hasattr(self.encoder, "set_attn_implementation"):
            self.encoder.set_attn_implementation(name)

    def pooled(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None) -> torch.Tensor:
        """The text vectors the head reads (before dropout)."""
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **extra)
        return self.pool_output(out, attention_mask)

    def pool_output(self, encoder_output, attention_mask: torch.Tensor) -> torch.Tensor:
        """The head's input from the encoder's output: pooling, then unit length when ``normalize``."""
        pooled = pool(encoder_output.last_hidden_state, attention_mask, self.pooling,
                      getattr(encoder_output, "pooler_output", None))
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None) -> ClassifierOutput:
        pooled = self.pooled(input_ids, attention_mask, token_type_ids, inputs_embeds)
        return ClassifierOutput(logits=self.head(self.dropout(pooled)))
