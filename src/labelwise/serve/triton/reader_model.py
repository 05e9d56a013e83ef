"""Triton Python-backend model: TEXT → RESULT, PROBS for a model that reads long texts in windows or blends a
TF-IDF baseline into its scores, which the plain ensemble (one row per text, logits straight to the post-processing)
cannot do.

Copied as ``model.py`` into ``<name>/1/`` by ``labelwise export --triton`` in place of the ensemble, beside
``tokenizer.json`` and ``reader.json`` (and, with a blend, the baseline's ``vocabulary.json`` and ``idf.npy``,
``weight.npy``, ``bias.npy``). For each request it reads the texts as ``labelwise predict`` does:

1. each text becomes windows of ``max_seq_length`` tokens overlapping by ``stride`` (the tokenizer's own overflow,
   as ``labelwise.predict.batching.encode`` asks for it), or its first ``max_seq_length`` tokens;
2. the windows go to ``<name>_onnx`` (business-logic scripting: an inference request from inside this model), at
   most ``max_batch_size`` at a time;
3. a text's logits are the max (or mean, ``window_pool``) of its windows';
4. with a blend, per label ``w · logit + (1 − w) · (scale · svm + shift)``, the SVM's decision computed here in
   numpy from the stored TF-IDF vocabulary (``labelwise.model.blend``);
5. ``<name>_postprocess`` turns the logits into labels (temperatures, thresholds, the label tree), unchanged.

Needs only ``numpy`` and ``tokenizers`` in Triton's Python environment; tests/test_triton.py checks it against the
Classifier with a stand-in for Triton.
"""
import json
import os
import re

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern (the baseline's word analyzer)
SPACES = re.compile(r"\s\s+")  # scikit-learn's char analyzer first folds runs of white space into one


class TfidfSvm:
    """The baseline's decision values: TF-IDF (sublinear tf, idf, l2) rows times one linear function per label."""

    def __init__(self, folder):
        with open(os.path.join(folder, "vocabulary.json"), encoding="utf-8") as handle:
            spec = json.load(handle)
        self.analyzer, (self.low, self.high) = spec["analyzer"], spec["ngram_range"]
        self.columns = {gram: j for j, gram in enumerate(spec["vocabulary"])}
        self.idf, self.weight, self.bias = (np.load(os.path.join(folder, f"{name}.npy"), allow_pickle=False)
                                            .astype(np.float64) for name in ("idf", "weight", "bias"))

    def grams(self, text):
        text = text.lower()
        if self.analyzer == "char":
            text = SPACES.sub(" ", text)
            return [text[i:i + n] for n in range(self.low, self.high + 1) for i in range(len(text) - n + 1)]
        words = WORD.findall(text)
        return [" ".join(words[i:i + n]) for n in range(self.low, self.high + 1) for i in range(len(words) - n + 1)]

    def decision(self, texts):
        out = np.tile(self.bias, (len(texts), 1))
        for i, text in enumerate(texts):
            counts = {}
            for gram in self.grams(text):
                j = self.columns.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if counts:
                idx = np.fromiter(counts, dtype=np.int64, count=len(counts))
                v = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * self.idf[idx]
                out[i] += (v / np.linalg.norm(v)) @ self.weight[:, idx].T
        return out


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"], str(args["model_version"]))
        with open(os.path.join(folder, "reader.json"), encoding="utf-8") as handle:
            self.info = json.load(handle)
        self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        self.tokenizer.no_padding()
        stride = self.info["stride"] if self.info["long_text"] == "slide" else 0
        self.tokenizer.enable_truncation(int(self.info["max_seq_length"]), stride=int(stride))
        blend = self.info.get("blend")
        self.svm = TfidfSvm(folder) if blend else None
        self.weights = np.asarray(blend["weights"], dtype=np.float64) if blend else None

    def execute(self, requests):
        return [self.answer(request) for request in requests]

    def answer(self, request):
        """One request's response: its texts read, scored and decided, or an error response (never an exception)."""
        try:
            texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t)
                     for t in pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)]
            outputs = self._infer(self.info["postprocess_model"], [pb_utils.Tensor("logits", self.logits(texts))],
                                  ["RESULT", "PROBS"])
        except (UnicodeDecodeError, ValueError, RuntimeError) as err:
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"reader: {err}"))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, outputs[name])
                                                          for name in ("RESULT", "PROBS")])

    def windows(self, texts):
        """(token ids, type ids, owner) of every window: a long text gives several rows, all of text ``owner``."""
        ids, types, owner = [], [], []
        for i, enc in enumerate(self.tokenizer.encode_batch(texts)):
            parts = [enc] + (list(enc.overflowing) if self.info["long_text"] == "slide" else [])
            for part in parts:
                ids.append(part.ids)
                types.append(part.type_ids)
                owner.append(i)
        return ids, types, np.asarray(owner, dtype=np.int64)

    def logits(self, texts):
        ids, types, owner = self.windows(texts)
        step = int(self.info["max_batch_size"])
        window_logits = np.concatenate([self._onnx(ids[s:s + step], types[s:s + step])
                                        for s in range(0, len(ids), step)])
        out = np.zeros((len(texts), window_logits.shape[1]), dtype=np.float64)
        if self.info["window_pool"] == "mean":
            np.add.at(out, owner, window_logits)
            out /= np.maximum(np.bincount(owner, minlength=len(texts)), 1)[:, None]
        else:
            out.fill(-np.inf)
            np.maximum.at(out, owner, window_logits)
        if self.svm is not None:
            svm = self.info["blend"]["scale"] * self.svm.decision(texts) + self.info["blend"]["shift"]
            out = self.weights * out + (1.0 - self.weights) * svm
        return out.astype(np.float32)

    def _onnx(self, ids, types):
        width = max(len(row) for row in ids)
        arrays = {"input_ids": np.full((len(ids), width), int(self.info["pad_token_id"]), dtype=np.int64),
                  "attention_mask": np.zeros((len(ids), width), dtype=np.int64),
                  "token_type_ids": np.zeros((len(ids), width), dtype=np.int64)}
        for i, row in enumerate(ids):
            arrays["input_ids"][i, :len(row)] = row
            arrays["attention_mask"][i, :len(row)] = 1
            arrays["token_type_ids"][i, :len(row)] = types[i]
        inputs = [pb_utils.Tensor(name, arrays[name]) for name in self.info["onnx_inputs"]]
        logits_name = self.info["logits_name"]
        return self._infer(self.info["onnx_model"], inputs, [logits_name])[logits_name].astype(np.float64)

    def _infer(self, model, inputs, outputs):
        response = pb_utils.InferenceRequest(model_name=model, requested_output_names=outputs,
                                             inputs=inputs).exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}

    def finalize(self):
        self.tokenizer = None
