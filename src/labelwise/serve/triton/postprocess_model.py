"""Triton Python-backend model: logits → label names and confidences, with the model's thresholds.

Copied as ``model.py`` into ``<name>_postprocess/1/`` by ``labelwise export --triton``, beside a
``labels.json`` (labels, per-label thresholds, top_k_min, and for a label tree each label's parent and the
hierarchy mode). Outputs per text: RESULT, a UTF-8 JSON string ``{"label": [names], "confidence": [probabilities]}``
(most probable first), and PROBS, the probability of every label.

Triton's Python environment has numpy, not labelwise, so the rule of ``labelwise.evaluation.decision.decision_matrix``
is written out here in numpy (tests/test_triton.py checks both give the same labels): labels at or above their
threshold, at least ``top_k_min`` of them. For a label tree (``parents``: each label's parent id, -1 for a root),
``hierarchy`` consistent (the default) adds every chosen label's ancestors, and ``top_k_min`` counts the deepest
chosen labels (paths): the most probable other labels join, with their ancestors, until there are enough;
``leaves`` chooses the same labels and outputs only the deepest; ``none`` decides each label on its own.
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
        # a calibrated model's per-label temperatures: each logit is divided by its label's before the sigmoid
        self.temperatures = np.asarray(info.get("temperatures") or [1.0] * len(self.labels), dtype=np.float64)
        self.top_k_min = int(info.get("top_k_min", 0))
        self.parents = [int(p) for p in info.get("parents") or [-1] * len(self.labels)]
        self.mode = info.get("hierarchy", "consistent")
        self.tree = self.mode != "none" and any(p >= 0 for p in self.parents)
        self.paths = [self._path(j) for j in range(len(self.labels))]  # root first, the label last

    def _path(self, j):
        out = [j]
        while self.parents[out[-1]] >= 0:
            out.append(self.parents[out[-1]])
        return out[::-1]

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy().astype(np.float64)
            logits = logits / self.temperatures
            with np.errstate(over="ignore"):  # a very negative logit: exp overflows to inf, the probability is 0
                probs = 1.0 / (1.0 + np.exp(-logits))
            results = [json.dumps(self.choose(row), ensure_ascii=False).encode("utf-8") for row in probs]
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("RESULT", np.array(results, dtype=np.object_).reshape(-1, 1)),
                pb_utils.Tensor("PROBS", probs.astype(np.float32))]))
        return responses

    def _ends(self, chosen):
        """The chosen labels none of whose children is chosen."""
        ends = chosen.copy()
        for j in np.flatnonzero(chosen):
            if self.parents[j] >= 0:
                ends[self.parents[j]] = False
        return ends

    def decide(self, row):
        """The chosen labels of one text, a 0/1 (bool) vector over the labels."""
        order = np.argsort(-row, kind="stable")
        chosen = row >= self.thresholds
        if not self.tree:
            if chosen.sum() < self.top_k_min:
                chosen[:] = False
                chosen[order[:self.top_k_min]] = True
            return chosen
        for j in np.flatnonzero(chosen):  # a chosen child brings its ancestors
            chosen[self.paths[j]] = True
        if self._ends(chosen).sum() < self.top_k_min:
            for j in order:
                if not chosen[j]:
                    chosen[self.paths[j]] = True
                    if self._ends(chosen).sum() >= self.top_k_min:
                        break
        return chosen

    def choose(self, row):
        chosen = self.decide(row)
        if self.tree and self.mode == "leaves":
            chosen = self._ends(chosen)
        keep = [int(j) for j in np.argsort(-row, kind="stable") if chosen[j]]
        return {"label": [self.labels[j] for j in keep], "confidence": [round(float(row[j]), 6) for j in keep]}

    def finalize(self):
        pass
