"""``labelwise adapt``: continue pre-training an encoder on the user's unlabelled texts (domain adaptation).

``adapt(AdaptConfig(pool_file="pool.txt", save_dir="adapted"))`` trains the encoder on the pool with one of
three objectives and writes a plain encoder folder (``config.json``, ``model.safetensors``, tokenizer files,
``adapt.json``, ``README.md``) that ``AutoModel.from_pretrained`` loads and every command takes as
``--model_name adapted``:

* ``mlm``: masked-token prediction (15% of the tokens, BERT's 80/10/10 rule) through a new prediction head whose
  output layer is tied to the word embeddings (m3e-small and MiniLM ship without one); the head is dropped after;
* ``contrastive``: each text encoded twice with dropout as the only noise, the two vectors pulled together and
  the batch's other texts pushed away (unsupervised SimCSE, pooled as the encoder is read in training);
* ``both``: the sum of the two losses on each batch.

A share of the pool (``held_out``) is kept back and both losses are measured on it before and after, so the
folder says what adaptation changed on texts it did not train on. Texts of the dataset's dev and test splits are
removed from the pool (a pool that holds test texts would leak them into the encoder); the log says how many.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from labelwise.data.dataset import load_dataset, read_texts
from labelwise.data.tables import columns_of
from labelwise.errors import DataError, LabelwiseError
from labelwise.files import OutputKind, atomic_dir, atomic_write_json, atomic_write_text, prepare_output_dir
from labelwise.locks import output_lock
from labelwise.model.device import resolve_device
from labelwise.model.encoders import quiet_transformers, resolve_model_name, resolve_pooling
from labelwise.model.language import pick_encoder
from labelwise.training.config import OBJECTIVES, AdaptConfig
from labelwise.training.loop import StepLoop, linear_schedule
from labelwise.training.resume import TRAIN_STATE, load_state, remove_state, restore_random_states, save_state

log = logging.getLogger("labelwise")

ADAPT_INFO = "adapt.json"
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling")
ADAPTED = OutputKind("adapted encoder", ADAPT_INFO, ("config.json", "model.safetensors", "tokenizer*.json",
                                                    "special_tokens_map.json", "vocab.txt", "README.md", ADAPT_INFO,
                                                    *SENTENCE_FILES))


@dataclass
class AdaptResult:
    folder: Path
    info: dict  # adapt.json


def adapt(cfg: AdaptConfig | None = None, **options) -> AdaptResult:
    """Continue pre-training ``cfg.model_name`` on the pool; the adapted encoder goes to ``cfg.save_dir``."""
    cfg = dataclasses.replace(cfg or AdaptConfig(), **options).validate()
    with output_lock(cfg.save_dir):
        prepare_output_dir(cfg.save_dir, ADAPTED, overwrite=cfg.overwrite,
                           inputs={"pool_file": cfg.pool_file, "dataset_dir": cfg.dataset_dir})
        state = _state_dir(cfg.save_dir)
        prepare_output_dir(state, TRAIN_STATE, overwrite=cfg.overwrite)
        return _adapt(cfg, state)


def adapt_for_training(cfg, model_name: str, processes: int = 1) -> AdaptResult:
    """``train --adapt_pool``: adapt ``model_name`` on the pool into ``<save_dir>.adapted`` (kept, and reused by
    ``--resume`` once complete), to fine-tune from."""
    if processes > 1:
        raise LabelwiseError("`adapt_pool` runs in one process: run `labelwise adapt` first, then train with "
                             "`model_name` set to its folder")
    folder = Path(f"{cfg.save_dir}.adapted")
    if cfg.resume and (folder / ADAPT_INFO).is_file():
        log.info("--resume: the adapted encoder in %s is complete; fine-tuning from it", folder)
        return AdaptResult(folder, json.loads((folder / ADAPT_INFO).read_text(encoding="utf-8")))
    return adapt(AdaptConfig(pool_file=cfg.adapt_pool, dataset_dir=cfg.dataset_dir, save_dir=str(folder),
                             model_name=model_name, objective=cfg.adapt_objective, seed=cfg.seed, device=cfg.device,
                             overwrite=cfg.overwrite, resume=cfg.resume, text_column=cfg.text_column,
                             max_seq_length=cfg.max_seq_length or 128))


def read_pool(cfg: AdaptConfig) -> list[str]:
    """The pool's texts, each once, with the dataset's dev and test texts taken out."""
    texts: list[str] = []
    kept_out: set[str] = set()
    columns = columns_of(cfg)
    if cfg.dataset_dir:
        ds = load_dataset(cfg.dataset_dir, columns=columns, require=("train",))
        texts += [e.text for e in ds.train] + list(ds.data or ())
        kept_out = {e.text for e in (ds.dev or []) + (ds.test or [])}
    if cfg.pool_file:
        texts += read_texts(cfg.pool_file, columns)
    unique = list(dict.fromkeys(t for t in texts if t.strip()))
    pool = [t for t in unique if t not in kept_out]
    if len(unique) > len(pool):
        log.info("adapt: %d pool texts are also dev or test texts of %s: left out (they must stay unseen)",
                 len(unique) - len(pool), cfg.dataset_dir)
    if len(pool) < 8:
        raise DataError(cfg.pool_file or cfg.dataset_dir, None, f"{len(pool)} distinct texts left in the pool; "
                        "adaptation needs at least 8", "give more unlabelled texts (thousands help most)")
    return pool


def _state_dir(save_dir: str) -> Path:
    path = Path(save_dir)
    return path.with_name(path.name + ".adapt_state")


def _adapt(cfg: AdaptConfig, state: Path) -> AdaptResult:
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

    quiet_transformers()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pool = read_pool(cfg)
    model_name, choice = pick_encoder(cfg.model_name, pool, "the pool")
    source = resolve_model_name(model_name)
    device = resolve_device(cfg.device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForMaskedLM.from_pretrained(source).to(device)  # the MLM head is new where the encoder has none
    pooling = resolve_pooling(cfg.pooling, source)
    order = rng.permutation(len(pool))
    n_held = min(500, int(len(pool) * cfg.held_out)) if cfg.held_out else 0
    held, train = [pool[i] for i in order[:n_held]], [pool[i] for i in order[n_held:]]
    ids = tokenizer(train, truncation=True, max_length=cfg.max_seq_length)["input_ids"]
    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.mlm_probability, return_tensors="pt")
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = min(cfg.max_steps or steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.epochs)
    log.info("adapt: %s (%s) on %d texts (%d held back), objective %s, %d steps of %d%s", model_name,
             choice.reason if choice else "given", len(train), len(held), cfg.objective, total, cfg.batch_size,
             f", {pooling} pooling" if cfg.objective != "mlm" else "")
    objective = Objective(model, tokenizer, masker, cfg, pooling, device)
    before = objective.held_out_losses(held)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    scheduler = linear_schedule(optimizer, total, warmup=max(1, total // 16))
    loop = StepLoop(model, optimizer, scheduler, max_grad_norm=1.0, logging_steps=10,
                    show=log.isEnabledFor(logging.INFO))
    data_key = {"seed": cfg.seed, "batch_size": cfg.batch_size, "objective": cfg.objective, "texts": len(train)}
    done = _resume(cfg, state, model, optimizer, scheduler, data_key, device)
    start = time.perf_counter()
    lengths = np.array([len(row) for row in ids])
    batches = [b for e in range(cfg.epochs) for b in _batches(lengths, cfg.batch_size, cfg.seed + e)]
    batches = [b for b in batches[:total] if len(b) >= 2]
    losses: list[float] = []
    for first in range(done, len(batches), cfg.save_steps):  # a resume state every save_steps steps
        chunk = batches[first:first + cfg.save_steps]
        losses += loop.epoch(chunk, lambda b: objective.loss([ids[i] for i in b]), "adapt")["loss"]
        if first + len(chunk) < len(batches):
            save_state(state, _Tied(model), optimizer, scheduler, {"step": first + len(chunk)}, data_key)
    minutes = (time.perf_counter() - start) / 60
    after = objective.held_out_losses(held)
    info = {"base_model": model_name, "encoder_choice": choice.to_json() if choice else None,
            "objective": cfg.objective, "pooling": pooling, "texts": len(train), "held_out": len(held),
            "steps": len(batches), "minutes": round(minutes, 2),
            "minutes_per_10k_texts_per_epoch": round(minutes * 1e4 / max(1, len(batches) * cfg.batch_size), 2),
            "held_out_loss": {"before": before, "after": after},
            "final_train_loss": round(float(np.mean(losses[-20:])), 4) if losses else None,
            "settings": dataclasses.asdict(cfg)}
    folder = _save(cfg, model, tokenizer, source, info)
    remove_state(state)
    log.info("adapt: done in %.1f min; held-back loss %s → %s; encoder in %s (use --model_name %s)", minutes,
             _brief(before), _brief(after), folder, folder)
    return AdaptResult(folder, info)


def _batches(lengths: np.ndarray, size: int, seed: int) -> list[np.ndarray]:
    """One epoch's batches: random groups of 50 batches' worth of texts, each sorted by length and cut into
    batches, all in random order; texts of a batch have similar lengths, so little of each step is padding."""
    rng = np.random.default_rng(seed)
    order, group = rng.permutation(len(lengths)), 50 * size
    batches = []
    for start in range(0, len(order), group):
        chunk = order[start:start + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class Objective:
    """The adaptation loss of a batch of token id lists, and both losses on held-back texts."""

    def __init__(self, model, tokenizer, masker, cfg: AdaptConfig, pooling: str, device: str):
        self.model, self.tokenizer, self.masker, self.cfg = model, tokenizer, masker, cfg
        self.pooling, self.device = pooling, device

    def loss(self, rows: list[list[int]]) -> torch.Tensor:
        total = 0.0
        if self.cfg.objective in ("mlm", "both"):
            total = total + self.mlm(rows)
        if self.cfg.objective in ("contrastive", "both"):
            total = total + self.contrastive(rows)
        return total

    def mlm(self, rows: list[list[int]]) -> torch.Tensor:
        batch = self.masker([{"input_ids": r} for r in rows])
        return self.model(**{k: v.to(self.device) for k, v in batch.items()}).loss

    def contrastive(self, rows: list[list[int]]) -> torch.Tensor:
        batch = self.tokenizer.pad({"input_ids": rows}, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        doubled = {k: torch.cat([v, v]) for k, v in batch.items()}  # two passes, two dropout masks
        hidden = self.model.base_model(**doubled).last_hidden_state
        if self.pooling == "mean":
            mask = doubled["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        else:
            vectors = hidden[:, 0]
        a, b = torch.nn.functional.normalize(vectors, dim=-1).chunk(2)
        logits = a @ b.T / self.cfg.temperature
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(a), device=logits.device))

    def held_out_losses(self, texts: list[str]) -> dict[str, float] | None:
        """Both losses on ``texts`` (the same masks and dropout every time: a fixed seed), in training mode."""
        if len(texts) < 2:
            return None
        ids = self.tokenizer(texts, truncation=True, max_length=self.cfg.max_seq_length)["input_ids"]
        out = {"mlm": [], "contrastive": []}
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(12345)
            self.model.train()
            for i in range(0, len(ids), self.cfg.batch_size):
                rows = ids[i:i + self.cfg.batch_size]
                if len(rows) >= 2:
                    out["mlm"].append(self.mlm(rows).item())
                    out["contrastive"].append(self.contrastive(rows).item())
        return {k: round(float(np.mean(v)), 4) for k, v in out.items()}


def _resume(cfg: AdaptConfig, state: Path, model, optimizer, scheduler, data_key: dict, device: str) -> int:
    """Steps already taken by an interrupted run (0 for a new one); its weights and optimiser are restored."""
    if not (state / "state.json").exists():
        if cfg.resume:
            log.warning("--resume: no resume state in %s; adapting from the start", state)
        return 0
    if not cfg.resume and cfg.overwrite:
        remove_state(state)
        return 0
    if not cfg.resume:
        raise LabelwiseError(f"{state}: an interrupted adaptation of `save_dir` {cfg.save_dir} left its state "
                             "here; continue it with `resume`, or start over with `overwrite`")
    standing = load_state(state, _Tied(model), optimizer, scheduler, data_key, device)
    if standing.get("random") is not None:
        restore_random_states(standing["random"])
    log.info("--resume: continuing after step %d", standing["step"])
    return int(standing["step"])


class _Tied:
    """The MLM model's weights for the resume state: each tied tensor (decoder = word embeddings) once."""

    def __init__(self, model):
        self.model = model

    def state_dict(self) -> dict:
        seen, out = set(), {}
        for name, tensor in self.model.state_dict().items():
            if tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                out[name] = tensor
        return out

    def load_state_dict(self, tensors: dict) -> None:
        missing = self.model.load_state_dict(tensors, strict=False).missing_keys
        self.model.tie_weights()
        kept = set(self.state_dict())  # a missing name outside it is a tied alias, restored by tie_weights
        lost = [k for k in missing if k in kept]
        if lost:
            raise ValueError(f"{len(lost)} weights missing (e.g. {lost[0]})")


def _save(cfg: AdaptConfig, model, tokenizer, source: str, info: dict) -> Path:
    with atomic_dir(cfg.save_dir, ADAPTED) as tmp:
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(source)  # the encoder only: the MLM head is dropped, the pooler kept as
        encoder.load_state_dict(model.base_model.state_dict(), strict=False)  # it was ([CLS] pooling reads it)
        encoder.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name in SENTENCE_FILES:  # a sentence encoder's pooling files: the folder is still read as one
            found = Path(source) / name
            if found.is_dir():
                shutil.copytree(found, tmp / name)
            elif found.is_file():
                shutil.copy2(found, tmp / name)
        atomic_write_json(tmp / ADAPT_INFO, info)
        atomic_write_text(tmp / "README.md", _card(info))
    return Path(cfg.save_dir)


def _brief(losses: dict | None) -> str:
    return "n/a" if not losses else ", ".join(f"{k} {v:.3f}" for k, v in losses.items())


def _card(info: dict) -> str:
    held = info["held_out_loss"]
    return (f"# {info['base_model']}, adapted with labelwise\n\n"
            f"An encoder folder (`AutoModel.from_pretrained(folder)`): `{info['base_model']}` trained further on "
            f"{info['texts']:,} unlabelled texts with the {info['objective']} objective ({info['steps']} steps, "
            f"{info['minutes']} min). Its licence is the base model's.\n\n"
            f"Held-back texts ({info['held_out']}): loss before {_brief(held['before'])}; after "
            f"{_brief(held['after'])}.\n\nTrain a classifier on it: `labelwise train --dataset_dir DIR --model_name "
            f"THIS_FOLDER`. Settings: `{ADAPT_INFO}`.\n")


__all__ = ["ADAPTED", "AdaptConfig", "AdaptResult", "OBJECTIVES", "Objective", "adapt", "adapt_for_training", "read_pool"]
