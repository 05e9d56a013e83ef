"""PaddleNLP's side of benchmarks/speed/vs_paddlenlp.py: run in a separate virtual environment with PaddlePaddle.

    venv-paddle/bin/python benchmarks/speed/paddle_side.py JOB.json   # prints one JSON line of results

It never imports labelwise (the two stacks need different huggingface_hub versions); the driver writes token ids,
labels and weights as .npy/.npz files and a JOB.json that names the task:

* ``train``: PaddleNLP's fine-tuning loop on the given token ids, one epoch: ErnieForSequenceClassification,
  AdamW (no decay on biases and norms) with linear warm-up/decay, BCE-with-logits, shuffled batches each padded to
  its longest text (what its DataCollatorWithPadding does). Reports samples/s over all steps.
* ``export``: load the driver's weights into ErnieForSequenceClassification, save the static graph with
  ``paddle.jit.save`` (as PaddleNLP's export_model.py does) and convert it with paddle2onnx, opset 13 (as its
  deploy predictor does).
* ``infer``: Paddle Inference on the static graph (CPU, ``threads`` math threads), batch 32, on ids padded to
  128 (tokenization excluded); then the same with PaddleNLP's own tokenizer in the timing (texts → ids padded to
  the longest of all texts, as its predictor's preprocess does). Best of ``rounds``; logits saved for the driver.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def _model(job: dict):
    from paddlenlp.transformers import ErnieConfig, ErnieForSequenceClassification

    return ErnieForSequenceClassification(ErnieConfig(**job["config"]))


def _graph_file(prefix: Path) -> Path:
    """The saved static graph: model.json (Paddle 3's PIR format) or model.pdmodel (older Paddle)."""
    return next(p for p in (prefix.with_suffix(".json"), prefix.with_suffix(".pdmodel")) if p.exists())


def _ragged(path: str) -> list[np.ndarray]:
    data = np.load(path)
    return np.split(data["ids"], data["offsets"][1:-1])


def train(job: dict) -> dict:
    import paddle

    paddle.seed(job["seed"])
    model = _model(job)
    sequences, y = _ragged(job["ids"]), np.load(job["labels"]).astype("float32")
    batch_size, steps = job["batch_size"], -(-len(sequences) // job["batch_size"])
    schedule = paddle.optimizer.lr.LambdaDecay(
        job["learning_rate"], lambda s: min((s + 1) / max(1, int(0.1 * steps)), max(0.0, (steps - s) / steps)))
    no_decay = {p.name for n, p in model.named_parameters() if "bias" in n or "norm" in n}
    optimizer = paddle.optimizer.AdamW(learning_rate=schedule, parameters=model.parameters(), weight_decay=0.01,
                                       apply_decay_param_fun=lambda name: name not in no_decay)
    loss_fn = paddle.nn.BCEWithLogitsLoss()
    order = np.random.default_rng(job["seed"]).permutation(len(sequences))
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        rows = order[step * batch_size:(step + 1) * batch_size]
        width = max(len(sequences[r]) for r in rows)
        ids = np.zeros((len(rows), width), dtype="int64")
        for i, r in enumerate(rows):
            ids[i, :len(sequences[r])] = sequences[r]
        logits = model(input_ids=paddle.to_tensor(ids), token_type_ids=paddle.zeros_like(paddle.to_tensor(ids)))
        loss = loss_fn(logits, paddle.to_tensor(y[rows]))
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.clear_grad()
    seconds = time.perf_counter() - start
    return {"samples_per_second": len(sequences) / seconds, "seconds": seconds, "final_loss": float(loss)}


def export(job: dict) -> dict:
    import paddle
    import paddle2onnx

    model = _model(job)
    weights = np.load(job["weights"])
    state = model.state_dict()
    missing = sorted(set(state) - set(weights.files))
    if missing:
        raise SystemExit(f"weights file lacks {missing[:5]}")
    model.set_state_dict({k: paddle.to_tensor(weights[k]) for k in state})
    model.eval()
    spec = [paddle.static.InputSpec([None, None], "int64", "input_ids"),
            paddle.static.InputSpec([None, None], "int64", "token_type_ids")]
    prefix = Path(job["out_dir"]) / "model"
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec), str(prefix))
    graph = _graph_file(prefix)
    start = time.perf_counter()
    paddle2onnx.export(str(graph), str(prefix.with_suffix(".pdiparams")), str(prefix.with_suffix(".onnx")),
                       opset_version=13, enable_onnx_checker=True)
    return {"graph": str(graph), "onnx": str(prefix.with_suffix(".onnx")),
            "paddle2onnx_seconds": time.perf_counter() - start}


def _predictor(job: dict):
    import paddle.inference as pi

    prefix = Path(job["out_dir"]) / "model"
    config = pi.Config(str(_graph_file(prefix)), str(prefix.with_suffix(".pdiparams")))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(job["threads"])
    config.disable_glog_info()
    return pi.create_predictor(config)


def _run(predictor, ids: np.ndarray, batch_size: int) -> np.ndarray:
    names, out = predictor.get_input_names(), []
    for i in range(0, len(ids), batch_size):
        batch = ids[i:i + batch_size]
        for name, array in zip(names, (batch, np.zeros_like(batch))):
            handle = predictor.get_input_handle(name)
            handle.reshape(array.shape)
            handle.copy_from_cpu(np.ascontiguousarray(array))
        predictor.run()
        out.append(predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu())
    return np.concatenate(out)


def infer(job: dict) -> dict:
    from paddlenlp.transformers import ErnieTokenizer

    predictor = _predictor(job)
    ids = np.load(job["padded_ids"])
    texts = json.loads(Path(job["texts"]).read_text(encoding="utf-8"))
    tokenizer = ErnieTokenizer(job["vocab_file"], do_lower_case=True)
    _run(predictor, ids[:job["batch_size"]], job["batch_size"])  # warm-up
    excluded, included = [], []
    for _ in range(job["rounds"]):
        start = time.perf_counter()
        logits = _run(predictor, ids, job["batch_size"])
        excluded.append(time.perf_counter() - start)
        start = time.perf_counter()
        enc = tokenizer(texts, max_length=job["max_seq_length"], padding=True, truncation=True,
                        return_attention_mask=False, return_position_ids=False)
        _run(predictor, np.asarray(enc["input_ids"], dtype="int64"), job["batch_size"])
        included.append(time.perf_counter() - start)
    np.save(Path(job["out_dir"]) / "paddle_inference_logits.npy", logits)
    own = [tokenizer(t, max_length=job["max_seq_length"], truncation=True)["input_ids"] for t in texts]
    return {"seconds_excluded": excluded, "seconds_included": included,
            "own_ids": [list(map(int, x)) for x in own]}


TASKS = {"train": train, "export": export, "infer": infer}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    import paddle

    paddle.set_device("cpu")
    result = TASKS[job["task"]](job)
    print(json.dumps({"task": job["task"], "paddle": paddle.__version__, **result}))


if __name__ == "__main__":
    main()
