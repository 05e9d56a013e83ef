"""Triton Python-backend model: logits → label names and confidences, with the model's thresholds.

Copied as ``model.py`` into ``<name>_postprocess/1/`` by ``labelwise export --triton``, beside a
``labels.json`` (labels, per-label thresholds, top_k_min). Outputs per text: RESULT, a UTF-8 JSON
string ``{"label": [names], "confidence": [probabilities]}`` (most probable first), and PROBS, the
probability of every label. Same rule as ``labelwise.evaluation.decision.decide``: labels at or above their
threshold; at least ``top_k_min`` labels.
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"], str(args["model_version"]))
        with open(os.path.join(folder, "labels.json"), encoding="utf-8") as handle:
            info = json.load(handle)
        self.labels = info["labels"]
        self.thresholds = np.asarray(info["thresholds"], dtype=np.float64)
        self.top_k_min = int(info.get("top_k_min", 0))

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy().astype(np.float64)
            probs = 1.0 / (1.0 + np.exp(-logits))
            results = [json.dumps(self.choose(row), ensure_ascii=False).encode("utf-8") for row in probs]
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("RESULT", np.array(results, dtype=np.object_).reshape(-1, 1)),
                pb_utils.Tensor("PROBS", probs.astype(np.float32))]))
        return responses

    def choose(self, row):
        order = np.argsort(-row, kind="stable")
        keep = [int(j) for j in order if row[j] >= self.thresholds[j]]
        if len(keep) < self.top_k_min:
            keep = [int(j) for j in order[:self.top_k_min]]
        return {"label": [self.labels[j] for j in keep], "confidence": [round(float(row[j]), 6) for j in keep]}

    def finalize(self):
        pass
