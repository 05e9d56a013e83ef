"""Model cards: the ``README.md`` of a checkpoint or export folder, in the Hugging Face model-card convention.

:func:`write_model_card` renders one from a :class:`~labelwise.model.checkpoint.CheckpointMeta`: YAML front matter
(language, ``library_name: labelwise``, tags, metrics and ``model-index`` results, written by
``huggingface_hub.ModelCardData``), then the labels with their dev support / F1 / threshold, the figures (and the
linear baseline's), data sizes, training arguments, the encoder and its licence, how to load the folder without
labelwise, and intended use and limits. What the meta lacks (a model saved without a dev evaluation) is said to be
missing, never guessed. :func:`record_test_figures` adds the figures of ``labelwise evaluate --split test`` to a
card labelwise wrote, in place and atomically.
"""
from __future__ import annotations

import html
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelwise.files import atomic_write_text
from labelwise.evaluation.choices import describe_choices
from labelwise.model.encoders import HUB_MODELS

log = logging.getLogger("labelwise")

__all__ = ["CARD_FILE", "ExportCard", "card_language", "check_table", "licence_notice", "read_card", "record_test_figures", "write_model_card"]

CARD_FILE = "README.md"
LIBRARY = "labelwise"
TAGS = ["text-classification", "multi-label-classification"]
TEST_START, TEST_END = "<!-- labelwise:test -->", "<!-- /labelwise:test -->"  # the block evaluate replaces
# the figures each split's results hold: key in the metrics → (model-index metric type, name)
HEADLINE = {"micro_f1": ("f1", "micro-F1"), "macro_f1": ("f1", "macro-F1"), "accuracy": ("accuracy",
                                                                                         "exact-match accuracy")}
SETTINGS = {"@tuned": "per-label thresholds", "@0.5": "threshold 0.5"}
ENCODER_HUB_IDS = {"m3e-small": "moka-ai/m3e-small", "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
ENCODER_LANGUAGES = {"m3e-small": "zh", "all-minilm-l6-v2": "en"}
_SCRIPTS = (("ko", re.compile(r"[\uac00-\ud7af]")), ("ja", re.compile(r"[\u3040-\u30ff]")),
            ("zh", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")))


# ---- what the card says about the encoder ------------------------------------------------------------------
def _encoder_key(base_model: str) -> str:
    return str(base_model or "").strip().lower()


def card_language(labels, base_model: str = "") -> str | None:
    """zh / ja / ko when the label names are written in that script, else the encoder's language if known."""
    text = "".join(map(str, labels))
    for language, script in _SCRIPTS:
        if script.search(text):
            return language
    key = _encoder_key(base_model)
    if key in ENCODER_LANGUAGES:
        return ENCODER_LANGUAGES[key]
    return {"-zh": "zh", "-en": "en"}.get(key[-3:]) if key.startswith("ernie-") else None


def _hub_id(base_model: str) -> str | None:
    """The encoder's Hugging Face hub id, when it has one (never a local path)."""
    key = _encoder_key(base_model)
    hub = ENCODER_HUB_IDS.get(key) or HUB_MODELS.get(key)
    if hub:
        return hub
    name = str(base_model or "")
    looks_like_id = name.count("/") == 1 and not name.startswith((".", "/", "~")) and not os.path.exists(name)
    return name if looks_like_id else None


def licence_notice(base_model: str) -> str:
    key, hub = _encoder_key(base_model), _hub_id(base_model)
    if "m3e" in key:
        return ("m3e-small's model card states research / non-commercial use only; treat a model fine-tuned from "
                "it the same way: do not use it commercially.")
    if key.startswith("ernie") or (hub or "").startswith(("nghuyong/ernie", "susnato/ernie")):
        return "ERNIE (PaddlePaddle) and its PyTorch ports are released under the Apache-2.0 licence."
    if key == "all-minilm-l6-v2" or "all-minilm-l6-v2" in (hub or "").lower():
        return "all-MiniLM-L6-v2 is released under the Apache-2.0 licence (sentence-transformers' model card)."
    where = f" (https://huggingface.co/{hub})" if hub else ""
    return f"See the encoder's own model card{where} for its licence; this model inherits it."


# ---- formatting ----------------------------------------------------------------------------------------------
def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _plain(value: Any) -> str:
    """A user's text (a label name) for Markdown: HTML in it is shown, never rendered."""
    return html.escape(str(value), quote=False)


def _cell(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    return _plain(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows])


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def check_table(info: dict, files: dict[str, str]) -> str:
    """Markdown: an export's model files (precision → file name) with their checks against PyTorch (``info``:
    its export.json)."""
    checks = _dict(info.get("checks"))
    return _table(["precision", "file", "max logit difference", "decisions agreeing"],
                  [[p, f"`{name}`", _num(_dict(checks.get(p)).get("max_abs_logit_diff"), 6),
                    _num(_dict(checks.get(p)).get("decisions_agree"), 4)] for p, name in files.items()])


def _split_rows(metrics: dict, split: str) -> list[list[str]]:
    """Figure rows of one split (dev or test): the model at tuned thresholds and at 0.5, then the baseline."""
    rows = []
    for suffix, setting in SETTINGS.items():
        m = _dict(metrics.get(split + suffix))
        if m:
            rows.append([f"{split}, {setting}", _num(m.get("micro_f1")), _num(m.get("macro_f1")),
                         _num(m.get("accuracy"))])
    base = _dict(_dict(metrics.get("baseline")).get(split + "@0.5"))
    if base:
        rows.append([f"{split}, linear baseline", _num(base.get("micro_f1")), _num(base.get("macro_f1")),
                     _num(base.get("accuracy"))])
    return rows


FIGURE_HEADER = ["split, setting", "micro-F1", "macro-F1", "exact-match accuracy"]


def _eval_results(metrics: dict, dataset: str) -> list:
    from huggingface_hub import EvalResult

    out = []
    for split in ("dev", "test"):
        for suffix, setting in SETTINGS.items():
            for key, (kind, name) in HEADLINE.items():
                value = _dict(metrics.get(split + suffix)).get(key)
                if isinstance(value, (int, float)):
                    out.append(EvalResult(task_type="text-classification", task_name="multi-label text classification",
                                          dataset_type=dataset, dataset_name=dataset, dataset_split=split,
                                          metric_type=kind, metric_name=f"{name} ({setting})",
                                          metric_value=round(float(value), 2), metric_config=setting))
    return out


# ---- the card ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportCard:
    """What an export's writer (:mod:`labelwise.compress`) says about its engine in the card."""

    what: str  # "an ONNX export of a labelwise checkpoint, for ONNX Runtime"
    tag: str  # a Hub tag: onnx, openvino
    section: str  # Markdown: the engine, its files and their checks against PyTorch
    how: str  # the sentence before the snippet
    snippet: str  # plain-library code that predicts with this folder


def write_model_card(folder: str | os.PathLike, meta, kind: str = "checkpoint", *, extra: dict[str, str] | None = None,
                     language: str | None = None, export: ExportCard | None = None) -> Path:
    """Write ``folder/README.md`` for ``meta`` (a checkpoint's or an export's ``labelwise.json``).

    ``kind``: checkpoint | export (then ``export`` says what the engine is). ``extra``: more sections,
    title → Markdown. ``language``: overrides the guess from the label names and the encoder.
    """
    from huggingface_hub import ModelCard, ModelCardData

    if kind not in ("checkpoint", "export") or (kind == "export") != (export is not None):
        raise ValueError(f"kind must be checkpoint, or export with its ExportCard; got {kind!r}")
    folder = Path(folder)
    metrics, args = _dict(meta.metrics), _dict(meta.training_args)
    dataset = Path(str(args["dataset_dir"])).name if args.get("dataset_dir") else "unknown"
    encoder = str(meta.base_model or "unknown")
    short = Path(encoder).name if os.path.isabs(encoder) or os.path.exists(encoder) else encoder  # a folder: its name
    title = f"{dataset} · {short} ({LIBRARY} {kind})"
    results = _eval_results(metrics, dataset)
    data = ModelCardData(language=language or card_language(meta.labels, encoder), library_name=LIBRARY,
                         tags=TAGS + ([export.tag] if export else []), pipeline_tag="text-classification",
                         base_model=_hub_id(encoder), metrics=["f1", "accuracy"] if results else None,
                         model_name=title if results else None, eval_results=results or None)
    sections = [f"# {_plain(title)}", _summary(meta, export, dataset, encoder), _labels_section(meta, metrics),
                _figures_section(metrics), f"{TEST_START}\n{_test_from_meta(metrics)}\n{TEST_END}",
                _data_section(metrics, args), _args_section(args), _encoder_section(meta, encoder)]
    if export:
        sections.append(export.section)
    sections += [f"## {name}\n\n{body.strip()}" for name, body in (extra or {}).items()]
    sections += [_loading_section(export), _limits_section(meta, metrics, dataset)]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(s.strip() for s in sections) + "\n")
    return atomic_write_text(folder / CARD_FILE, str(card))


def _summary(meta, export: ExportCard | None, dataset: str, encoder: str) -> str:
    what = export.what if export else "a labelwise checkpoint (PyTorch, safetensors)"
    return (f"A multi-label text classifier, {what}: the `{encoder}` encoder with {meta.pooling} pooling and one "
            f"sigmoid per label, trained on `{dataset}` for {len(meta.labels)} labels. A text gets every label "
            f"whose probability reaches that label's threshold, so it can get several labels, or none.\n\n"
            + "\n".join(f"* {line}" for line in describe_choices(meta)))


def _labels_section(meta, metrics: dict) -> str:
    thresholds = meta.thresholds if meta.thresholds is not None else [0.5] * len(meta.labels)
    rows = {r.get("label"): r for r in metrics.get("per_label", []) if isinstance(r, dict)} \
        if isinstance(metrics.get("per_label"), list) else {}
    if not rows:
        note = ("Per-label dev figures were not recorded with this model"
                + (" (it was saved without a dev evaluation)." if not metrics else "."))
        return "## Labels\n\n" + _table(["label", "threshold"], [[label, _num(t, 3)] for label, t in
                                                                  zip(meta.labels, thresholds)]) + f"\n\n{note}"
    has_test = any("test_f1" in r for r in rows.values())
    header = ["label", "dev support", "dev F1", "threshold"] + (["test support", "test F1"] if has_test else [])
    table = []
    for label, t in zip(meta.labels, thresholds):
        r = rows.get(label, {})
        row = [label, r.get("dev_support", "—"), _num(r.get("dev_f1")), _num(t, 3)]
        table.append(row + ([r.get("test_support", "—"), _num(r.get("test_f1"))] if has_test else []))
    how = "per-label thresholds tuned on dev" if meta.thresholds is not None else "threshold 0.5"
    return f"## Labels\n\n{_table(header, table)}\n\nF1 in percent, with {how}; support: examples carrying the label."


def _figures_section(metrics: dict) -> str:
    rows = _split_rows(metrics, "dev")
    if not rows:
        return ("## Figures\n\nNo dev figures were recorded with this model (it was saved without a dev "
                "evaluation). `labelwise evaluate --params_path <this folder> --dataset_dir <data>` measures it.")
    out = f"## Figures\n\nIn percent. Best epoch: {metrics.get('epoch', '—')}.\n\n{_table(FIGURE_HEADER, rows)}"
    if metrics.get("dev@tuned"):
        out += ("\n\nThe dev figures with per-label thresholds use thresholds fit on dev itself: they are optimistic; "
                "test figures are the honest ones.")
    model = _dict(metrics.get("baseline")).get("model")
    return out + (f"\n\nLinear baseline: {model}, trained beside the model on the same data." if model else "")


def _test_from_meta(metrics: dict) -> str:
    rows = _split_rows(metrics, "test")
    if not rows:
        return ("## Test figures\n\nNone yet: `labelwise evaluate --split test` on a dataset with a test split adds "
                "them here.")
    return f"## Test figures\n\nIn percent, measured when the model was saved.\n\n{_table(FIGURE_HEADER, rows)}"


def _data_section(metrics: dict, args: dict) -> str:
    sizes = _dict(metrics.get("sizes"))
    files = [f"{split}: {sizes[split]:,} examples" + (f" (`{args[split + '_file']}`)" if args.get(split + "_file")
                                                      else "")
             for split in ("train", "dev", "test") if isinstance(sizes.get(split), int) and sizes[split]]
    where = f"Dataset folder: `{args['dataset_dir']}`.\n\n" if args.get("dataset_dir") else ""
    listed = "\n".join(f"* {line}" for line in files) if files else "Data sizes were not recorded with this model."
    return f"## Data\n\n{where}{listed}"


def _args_section(args: dict) -> str:
    if not args:
        return "## Training arguments\n\nNot recorded with this model."
    return "## Training arguments\n\n" + _table(["argument", "value"], [[f"`{k}`", v] for k, v in args.items()])


def _encoder_section(meta, encoder: str) -> str:
    hub = _hub_id(encoder)
    link = f" ([{hub}](https://huggingface.co/{hub}))" if hub and hub != encoder else ""
    norm = "; pooled vectors scaled to unit length before the head" if meta.normalize else ""
    return (f"## Encoder and licence\n\nEncoder: `{encoder}`{link}, {meta.pooling} pooling{norm}, at most "
            f"{meta.max_seq_length} tokens.\n\n**Licence:** {licence_notice(encoder)}")


# The one copy of the plain-transformers code: the card shows it, docs/training.md shows it verbatim and
# tests/test_inference.py runs it (mean and cls pooling) against labelwise's own probabilities.
CHECKPOINT_SNIPPET = '''```python
import json, torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

folder = "checkpoint"  # the checkpoint folder
texts = ["a text to label"]
meta = json.load(open(f"{folder}/labelwise.json", encoding="utf-8"))
tokenizer = AutoTokenizer.from_pretrained(folder)
encoder = AutoModel.from_pretrained(f"{folder}/encoder").eval()
head = load_file(f"{folder}/head.safetensors")
batch = tokenizer(texts, padding=True, truncation=True, max_length=meta["max_seq_length"], return_tensors="pt")
with torch.no_grad():
    out = encoder(**batch)
    if meta["pooling"] == "mean":  # average over the real tokens
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    else:  # "cls": the [CLS] vector through the encoder's pooler
        pooled = out.pooler_output
    if meta.get("normalize"):  # few-shot and zero-shot models: unit-length vectors
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    logits = pooled @ head["weight"].T + head["bias"]  # columns in meta["labels"] order
    if meta.get("calibration"):  # per-label temperatures fitted on dev
        logits = logits / torch.tensor(meta["calibration"]["temperatures"])
    probs = torch.sigmoid(logits)
thresholds = meta["thresholds"] or [0.5] * len(meta["labels"])
predicted = [[label for label, p, t in zip(meta["labels"], row.tolist(), thresholds) if p >= t] for row in probs]
```'''

def _loading_section(export: "ExportCard | None") -> str:
    name = "export" if export else "checkpoint"
    plain = export.how if export else ("With plain transformers and safetensors (the encoder loads with "
                                       "`AutoModel`, the head is one linear layer):")
    return (f"## How to use\n\nWith labelwise:\n\n```python\nimport labelwise\n\n"
            f"clf = labelwise.Classifier.load(\"{name}\")  # this folder\nclf.predict([\"a text to label\"])\n```\n\n"
            f"{plain}\n\n{export.snippet if export else CHECKPOINT_SNIPPET}")


def _limits_section(meta, metrics: dict, dataset: str) -> str:
    points = [(f"Made for texts like those of `{dataset}`, and only for its {len(meta.labels)} labels: it never "
               "predicts another label, and texts from another domain or language get unreliable probabilities."),
              (f"Only the first {meta.max_seq_length} tokens of a text are read (`labelwise predict --long_text "
               "slide` reads longer texts in windows)." if getattr(meta, "long_text", "truncate") != "slide" else
               "Long texts are read in windows: the plain-library snippet above cuts them instead (labelwise reads "
               "them whole)."),
              "A text can get no label at all (`top_k_min 1` always gives at least one)."]
    rows = [r for r in metrics.get("per_label", []) if isinstance(r, dict)] \
        if isinstance(metrics.get("per_label"), list) else []
    weak = [r["label"] for r in rows if isinstance(r.get("dev_f1"), (int, float)) and r["dev_f1"] < 50
            or isinstance(r.get("dev_support"), int) and r["dev_support"] < 10]
    if weak:
        points.append(f"Weak or barely measured labels (dev F1 under 50, or fewer than 10 dev examples): "
                      f"{', '.join(map(_plain, weak))}.")
    if not rows:
        points.append("Its accuracy per label is not known from this card: measure it on your own data first.")
    points += [("Probabilities are a model's guesses: where a wrong label matters (legal, medical, moderation "
                "decisions), keep a person in the loop."),
               "Licence: see \"Encoder and licence\" above."]
    return "## Intended use and limits\n\n" + "\n".join(f"* {p}" for p in points)


# ---- test figures from `labelwise evaluate --split test` ----------------------------------------------------
def read_card(folder: str | os.PathLike):
    """The folder's model card if labelwise wrote it (``library_name: labelwise``), else None."""
    import yaml
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD_FILE
    if not path.is_file() or not path.read_text(encoding="utf-8", errors="replace").startswith("---"):
        return None
    try:
        card = ModelCard.load(path)
    except (ValueError, TypeError, yaml.YAMLError):  # broken front matter: not a card labelwise wrote
        return None
    return card if getattr(card.data, "library_name", None) == LIBRARY else None


def record_test_figures(folder: str | os.PathLike, metrics: dict, source: str = "") -> Path | None:
    """Put the figures of an evaluation on the test split into the folder's labelwise card (atomically).

    ``metrics``: :attr:`labelwise.evaluation.evaluate.Evaluation.metrics` of the model with its own thresholds
    (tuned, or 0.5); ``source``: what was evaluated (e.g. the backend). The card's test block and its test
    results in the front matter are replaced; the rest is kept as it is. Returns the card's path, or None and
    writes nothing when the folder has no card labelwise wrote (a hand-written README, a retrieval index) or
    the figures are for other thresholds than the model's, or (with a warning) when the folder is read-only.
    """
    thresholds = str(metrics.get("thresholds", ""))
    suffix = "@tuned" if "tuned" in thresholds else "@0.5" if thresholds == "0.5" else None
    card = read_card(folder)
    if suffix is None or card is None or TEST_START not in card.text or TEST_END not in card.text:
        return None
    micro, macro = _dict(metrics.get("micro")), _dict(metrics.get("macro"))
    rows = [[name, _num(m.get("precision")), _num(m.get("recall")), _num(m.get("f1"))]
            for name, m in (("micro", micro), ("macro", macro))]
    labels = [[r.get("label"), r.get("support"), _num(r.get("precision")), _num(r.get("recall")), _num(r.get("f1"))]
              for r in metrics.get("per_label", []) if isinstance(r, dict)]
    block = (f"## Test figures\n\nFrom `labelwise evaluate --split test`{f' ({source})' if source else ''}: "
             f"{metrics.get('size', '—')} examples, {SETTINGS[suffix]}, exact-match accuracy "
             f"{_num(metrics.get('accuracy'))}; in percent.\n\n"
             + _table(["average", "precision", "recall", "F1"], rows))
    if labels:
        block += "\n\n" + _table(["label", "support", "precision", "recall", "F1"], labels)
    before, rest = card.text.split(TEST_START, 1)
    card.text = f"{before}{TEST_START}\n{block}\n{TEST_END}{rest.split(TEST_END, 1)[1]}"
    results = list(card.data.eval_results or [])
    dataset = next((r.dataset_name for r in results), None) or "unknown"
    figures = {f"test{suffix}": {"micro_f1": micro.get("f1"), "macro_f1": macro.get("f1"),
                                 "accuracy": metrics.get("accuracy")}}
    card.data.eval_results = [r for r in results if r.dataset_split != "test"] + _eval_results(figures, dataset)
    card.data.model_name = card.data.model_name or Path(folder).name
    card.data.metrics = card.data.metrics or ["f1", "accuracy"]
    try:
        return atomic_write_text(Path(folder) / CARD_FILE, str(card))
    except OSError as err:  # a read-only model folder: the evaluation itself still stands
        log.warning("the model card %s was not updated: %s", Path(folder) / CARD_FILE, err.strerror or err)
        return None
