"""What an export's model card says about its engine (:class:`labelwise.model.card.ExportCard`), one per format.

The snippets are the one copy of the plain-library code for each format; tests run them against labelwise's
own probabilities.
"""
from __future__ import annotations

import json
from pathlib import Path

from labelwise.model.card import ExportCard, check_table

__all__ = ["ONNX_SNIPPET", "OPENVINO_SNIPPET", "onnx_card", "openvino_card"]

# the end both snippets share: calibration, probabilities, the thresholds' decisions
_DECIDE = '''if meta.get("calibration"):  # per-label temperatures fitted on dev
    logits = logits / np.array(meta["calibration"]["temperatures"])
probs = 1 / (1 + np.exp(-logits))  # columns in meta["labels"] order
thresholds = meta["thresholds"] or [0.5] * len(meta["labels"])
predicted = [[label for label, p, t in zip(meta["labels"], row.tolist(), thresholds) if p >= t] for row in probs]
```'''

ONNX_SNIPPET = '''```python
import json
import numpy as np
import onnxruntime
from transformers import AutoTokenizer

folder = "export"  # this folder
texts = ["a text to label"]
meta = json.load(open(f"{folder}/labelwise.json", encoding="utf-8"))
tokenizer = AutoTokenizer.from_pretrained(folder)
session = onnxruntime.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
batch = tokenizer(texts, padding=True, truncation=True, max_length=meta["max_seq_length"], return_tensors="np")
inputs = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()}
logits = session.run(["logits"], inputs)[0]
''' + _DECIDE

OPENVINO_SNIPPET = '''```python
import json
import numpy as np
import openvino
from transformers import AutoTokenizer

folder = "export"  # this folder
texts = ["a text to label"]
meta = json.load(open(f"{folder}/labelwise.json", encoding="utf-8"))
tokenizer = AutoTokenizer.from_pretrained(folder)
model = openvino.Core().compile_model(f"{folder}/openvino_model.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
batch = tokenizer(texts, padding=True, truncation=True, max_length=meta["max_seq_length"], return_tensors="np")
inputs = {i.get_any_name(): batch[i.get_any_name()].astype(np.int64) for i in model.inputs}
logits = model(inputs)["logits"]
''' + _DECIDE


def _info(folder: Path) -> dict:
    path = Path(folder) / "export.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def onnx_card(folder: Path) -> ExportCard:
    info = _info(folder)
    files = info.get("files") if isinstance(info.get("files"), dict) else {}
    section = (f"## ONNX export\n\nOpset {info.get('opset', '—')}, onnxruntime {info.get('onnxruntime', '—')}; each "
               "graph checked against PyTorch:\n\n" + check_table(info, files)) if files else \
        "## ONNX export\n\nThe export's details (export.json) were not found."
    return ExportCard("an ONNX export of a labelwise checkpoint, for ONNX Runtime", "onnx", section,
                      "With ONNX Runtime and a transformers tokenizer only:", ONNX_SNIPPET)


def openvino_card(folder: Path) -> ExportCard:
    info = _info(folder)
    files = info.get("files") if isinstance(info.get("files"), dict) else {}
    int8 = info.get("int8_mode")
    how = {"static": "int8 by NNCF post-training quantisation, calibrated on "
                     f"{info.get('calibration_texts', '—')} texts", "weights": "int8 weights (NNCF weight compression)"}
    section = (f"## OpenVINO export\n\nOpenVINO {info.get('openvino', '—')}"
               + (f"; {how.get(int8, int8)}" if int8 else "") + "; bf16 runs the fp32 files with OpenVINO's bf16 "
               "precision hint on CPUs that have bf16 units. Each checked against PyTorch:\n\n"
               + check_table(info, files))
    return ExportCard("an OpenVINO export of a labelwise checkpoint, for the OpenVINO runtime on CPUs", "openvino",
                      section, "With OpenVINO and a transformers tokenizer only:", OPENVINO_SNIPPET)
