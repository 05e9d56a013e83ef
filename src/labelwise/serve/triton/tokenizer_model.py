"""Triton Python-backend model: TEXT (bytes) → the ONNX graph's inputs (int64, padded per request).

Copied as ``model.py`` into ``<name>_tokenizer/1/`` by ``labelwise export --triton``, beside the
checkpoint's ``tokenizer.json``. Needs only ``numpy`` and ``tokenizers`` in Triton's Python
environment (not labelwise, not torch). Settings come from the config.pbtxt ``parameters``.
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], str(args["model_version"]))
        self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(params["max_seq_length"]))
        self.pad_id = int(params.get("pad_token_id", 0))
        self.output_names = [output["name"] for output in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
                texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw]
                arrays = self.encode(texts)
                tensors = [pb_utils.Tensor(name, arrays[name]) for name in self.output_names]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except (UnicodeDecodeError, ValueError) as err:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"tokenizer: {err}")))
        return responses

    def encode(self, texts):
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        types = np.zeros((len(texts), width), dtype=np.int64)
        for i, enc in enumerate(encodings):
            ids[i, :len(enc.ids)] = enc.ids
            mask[i, :len(enc.ids)] = 1
            types[i, :len(enc.ids)] = enc.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def finalize(self):
        self.tokenizer = None
