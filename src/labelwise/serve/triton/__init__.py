"""Write a Triton Inference Server model repository from an export folder.

``labelwise export --params_path checkpoint --output_path export --triton triton_repo`` gives::

    triton_repo/
      cls_multi_label/             ensemble: TEXT → RESULT (JSON labels + confidences), PROBS
        config.pbtxt, 1/
      cls_multi_label_tokenizer/   Python backend: TEXT → input_ids, attention_mask, token_type_ids
        config.pbtxt, 1/model.py, 1/tokenizer.json
      cls_multi_label_onnx/        onnxruntime backend: the exported graph
        config.pbtxt, 1/model.onnx
      cls_multi_label_postprocess/ Python backend: logits → RESULT, PROBS
        config.pbtxt, 1/model.py, 1/labels.json

Input and output names, types, dims and the label count of the ONNX model's config are read from
the graph itself, so nothing needs editing by hand. The Python-backend models need ``numpy`` and
``tokenizers`` in Triton's Python environment.

A model that reads long texts in windows (``long_text`` slide) or blends the TF-IDF baseline into its scores gets,
in place of the ensemble and its tokenizer, ``cls_multi_label/`` as a Python model (``reader_model.py``, with
``tokenizer.json``, ``reader.json`` and the baseline's arrays): it cuts each text into windows, sends them to the
ONNX model, pools each text's windows, blends, and hands the logits to the post-processing, so Triton reads a text
as ``labelwise predict`` does.

The post-processing decides as ``labelwise predict`` does: ``labels.json`` holds the export's thresholds and,
for a label tree (names such as ``体育##足球``, read with the export's ``hierarchy_sep``), each label's parent
and the ``hierarchy`` mode (consistent by default: a child only with its parent).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from labelwise.errors import LabelwiseError
from labelwise.evaluation.decision import check_hierarchy_mode
from labelwise.files import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_outputs,
)
from labelwise.model.checkpoint import read_meta
from labelwise.predict.batching import window_stride
from labelwise.predict.onnx_backend import MODEL_FILES

__all__ = ["PRECISIONS", "write_triton_repo", "graph_signature"]

PRECISIONS = tuple(MODEL_FILES)  # Triton runs one of the export's ONNX files

HERE = Path(__file__).resolve().parent
# ONNX TensorProto element type → Triton data type
TRITON_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL"}


def graph_signature(onnx_path: str | os.PathLike) -> tuple[list[dict], list[dict], bool]:
    """(inputs, outputs, dynamic_batch) of an ONNX graph; each tensor {name, data_type, dims}.

    ``dims`` leave out the batch axis when it is dynamic; symbolic axes become -1.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def describe(value) -> dict:
        kind = value.type.tensor_type
        if kind.elem_type not in TRITON_TYPES:
            raise LabelwiseError(f"{onnx_path}: tensor {value.name} has ONNX type {kind.elem_type}, "
                                 "which this writer does not map to Triton")
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim]
        return {"name": value.name, "data_type": TRITON_TYPES[kind.elem_type], "dims": dims}

    inputs = [describe(v) for v in graph.input if v.name not in initializers]
    outputs = [describe(v) for v in graph.output]
    dynamic_batch = all(t["dims"] and t["dims"][0] == -1 for t in inputs + outputs)
    if dynamic_batch:
        for tensor in inputs + outputs:
            tensor["dims"] = tensor["dims"][1:]
    return inputs, outputs, dynamic_batch


def _tensors(field: str, tensors: list[dict]) -> str:
    body = ",\n".join(f'  {{ name: "{t["name"]}" data_type: {t["data_type"]} dims: {t["dims"]} }}' for t in tensors)
    return f"{field} [\n{body}\n]\n"


def _parameters(values: dict) -> str:
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in values.items())


def _header(name: str, kind: str, max_batch_size: int) -> str:
    return f'name: "{name}"\n{kind}\nmax_batch_size: {max_batch_size}\n'


def _step(model: str, inputs: dict, outputs: dict) -> str:
    maps = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in inputs.items())
    maps += "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in outputs.items())
    return f'    {{\n      model_name: "{model}"\n      model_version: -1\n{maps}    }}'


def write_triton_repo(export_dir: str | os.PathLike, repo_dir: str | os.PathLike, *, name: str = "cls_multi_label",
                      precision: str = "fp32", max_batch_size: int = 64, top_k_min: int = 0,
                      device: str | None = None, hierarchy: str = "consistent") -> Path:
    """Write (atomically replace) ``repo_dir`` from export folder ``export_dir``; returns ``repo_dir``.

    ``device`` (cpu|gpu) places the ONNX model; default gpu for fp16, else cpu. ``hierarchy`` (a label tree's
    decisions: consistent | leaves | none) and ``top_k_min`` go into the post-processing's labels.json.
    """
    from labelwise.compress.export import make_readable
    from labelwise.predict.classifier import Classifier
    from labelwise.predict.onnx_backend import OnnxTokenizer, model_file

    export_dir = Path(export_dir)
    check_outputs([repo_dir], [export_dir], marker="README.md")
    check_hierarchy_mode(hierarchy)
    meta = read_meta(export_dir)
    reader = meta.long_text == "slide" or bool(meta.blend)  # windows or a blend: the reader model, not the ensemble
    tree = Classifier(None, None, meta, export_dir).hierarchy  # the tree the export's predictions follow
    onnx_path = model_file(export_dir, precision)
    inputs, outputs, dynamic_batch = graph_signature(onnx_path)
    if not dynamic_batch:
        raise LabelwiseError(f"{onnx_path}: the graph has a fixed batch size; export it with `labelwise export`")
    logits = outputs[0]
    if logits["dims"] != [len(meta.labels)]:
        raise LabelwiseError(f"{onnx_path}: output {logits['name']} has dims {logits['dims']}, but "
                             f"labelwise.json lists {len(meta.labels)} labels; export again")
    if max_batch_size < 1:
        raise LabelwiseError(f"`max_batch_size` {max_batch_size}: must be at least 1")
    names = {step: f"{name}_{step}" for step in ("tokenizer", "onnx", "postprocess")}
    pad_id = OnnxTokenizer.from_folder(export_dir).pad_token_id or 0
    thresholds = meta.thresholds if meta.thresholds is not None else [0.5] * len(meta.labels)
    text = [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}]
    results = [{"name": "RESULT", "data_type": "TYPE_STRING", "dims": [1]},
               {"name": "PROBS", "data_type": "TYPE_FP32", "dims": [len(meta.labels)]}]
    device = device or ("gpu" if precision == "fp16" else "cpu")
    if device not in ("cpu", "gpu"):
        raise LabelwiseError(f"`device` {device}: use cpu or gpu")
    instances = "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
    onnx_instances = instances.replace("KIND_CPU", f"KIND_{device.upper()}")
    configs = {
        names["onnx"]: _header(names["onnx"], 'platform: "onnxruntime_onnx"', max_batch_size)
        + _tensors("input", inputs) + _tensors("output", outputs) + onnx_instances
        + "dynamic_batching { max_queue_delay_microseconds: 2000 }\n",
        names["postprocess"]: _header(names["postprocess"], 'backend: "python"', max_batch_size)
        + _tensors("input", [dict(logits)]) + _tensors("output", results) + instances,
    }
    if reader:  # one Python model reads the text (windows, blend) and calls the other two itself
        configs[name] = _header(name, 'backend: "python"', max_batch_size) + _tensors("input", text) \
            + _tensors("output", results) + instances
    else:
        configs[names["tokenizer"]] = _header(names["tokenizer"], 'backend: "python"', max_batch_size) \
            + _tensors("input", text) + _tensors("output", inputs) \
            + _parameters({"max_seq_length": meta.max_seq_length, "pad_token_id": pad_id}) + instances
        configs[name] = _header(name, 'platform: "ensemble"', max_batch_size) + _tensors("input", text) \
            + _tensors("output", results) + "ensemble_scheduling {\n  step [\n" + ",\n".join([
                _step(names["tokenizer"], {"TEXT": "TEXT"}, {t["name"]: t["name"] for t in inputs}),
                _step(names["onnx"], {t["name"]: t["name"] for t in inputs}, {logits["name"]: logits["name"]}),
                _step(names["postprocess"], {logits["name"]: logits["name"]}, {"RESULT": "RESULT", "PROBS": "PROBS"}),
            ]) + "\n  ]\n}\n"
    with atomic_dir(repo_dir) as tmp:
        for model, config in configs.items():
            (tmp / model / "1").mkdir(parents=True)
            atomic_write_text(tmp / model / "config.pbtxt", config)
        shutil.copy2(onnx_path, tmp / names["onnx"] / "1" / "model.onnx")
        entry = tmp / (name if reader else names["tokenizer"]) / "1"
        shutil.copy2(HERE / ("reader_model.py" if reader else "tokenizer_model.py"), entry / "model.py")
        shutil.copy2(export_dir / "tokenizer.json", entry / "tokenizer.json")
        if reader:
            _write_reader(entry, export_dir, meta, names, inputs, logits["name"], pad_id, max_batch_size)
        shutil.copy2(HERE / "postprocess_model.py", tmp / names["postprocess"] / "1" / "model.py")
        atomic_write_json(tmp / names["postprocess"] / "1" / "labels.json",
                          {"labels": meta.labels, "thresholds": thresholds, "top_k_min": top_k_min,
                           "temperatures": (meta.calibration or {}).get("temperatures"),
                           "parents": list(tree.parents), "hierarchy": hierarchy, "hierarchy_sep": tree.sep})
        atomic_write_text(tmp / "README.md", _readme(name, precision, reader))
        make_readable(tmp)
    return Path(repo_dir)


def _write_reader(folder: Path, export_dir: Path, meta, names: dict, inputs: list[dict], logits_name: str,
                  pad_id: int, max_batch_size: int) -> None:
    """reader.json (how the reader model reads a text and whom it calls) and, with a blend, the baseline's arrays."""
    import numpy as np

    from labelwise.model.blend import BASELINE_DIR, LinearScorer

    info = {"long_text": meta.long_text, "max_seq_length": meta.max_seq_length,
            "stride": window_stride(meta.max_seq_length), "window_pool": getattr(meta, "window_pool", "max"),
            "pad_token_id": pad_id, "max_batch_size": max_batch_size, "onnx_model": names["onnx"],
            "onnx_inputs": [t["name"] for t in inputs], "logits_name": logits_name,
            "postprocess_model": names["postprocess"]}
    if meta.blend:
        scorer = LinearScorer.load(export_dir / BASELINE_DIR, len(meta.labels))
        info["blend"] = {key: meta.blend[key] for key in ("weights", "scale", "shift")}
        atomic_write_json(folder / "vocabulary.json", {"analyzer": scorer.analyzer,
                                                        "ngram_range": list(scorer.ngram_range),
                                                        "vocabulary": scorer.vocabulary})
        for key in ("idf", "weight", "bias"):
            np.save(folder / f"{key}.npy", getattr(scorer, key).astype(np.float32), allow_pickle=False)
    atomic_write_json(folder / "reader.json", info)


def _readme(name: str, precision: str, reader: bool = False) -> str:
    entry = (f"`{name}` (a Python model that reads each text in windows and/or blends the TF-IDF baseline, then "
             f"calls `{name}_onnx` and `{name}_postprocess`)" if reader else f"Ensemble `{name}`")
    return (f"# Triton model repository (written by `labelwise export --triton`)\n\n"
            f"{entry}: TEXT (string, one per row) → RESULT (JSON string "
            '`{"label": [...], "confidence": [...]}`) and PROBS (every label\'s probability).\n'
            f"ONNX precision: {precision}. The Python-backend models need `pip install numpy tokenizers` "
            "in Triton's Python environment.\n\n"
            "    docker run --rm -p8000:8000 -v $PWD:/models nvcr.io/nvidia/tritonserver:<version>-py3 \\\n"
            "        tritonserver --model-repository=/models\n")
