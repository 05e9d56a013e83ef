"""PaddleNLP's model-effects table for the models that run offline here: F1, ms/sample and size, one command.

    python benchmarks/compression/model_effects.py --dataset_dir data/divorce [--write]

Rows: the built-in TF-IDF + linear SVM baseline; m3e-small fine-tuned with `labelwise train`'s defaults; its
width-pruned 3/4 and 1/2 (`labelwise prune`); one depth-reduced variant (width 1, depth 1/2); PaddleNLP's published
rows beside them for reference (V100 GPU, so their ms are not comparable with these CPU ones).

Cache (reported in the output): every model is a folder under --work_dir (or --params_path for the unpruned
one) and is reused when it exists; delete a folder to rebuild it. Pruning runs with --prune_epochs (PaddleNLP's
10 take hours on a CPU). F1 is dev at threshold 0.5 (PaddleNLP's protocol), from each checkpoint. Latency is
ONNX Runtime on this CPU at batch 32 over the dev set: "model" = total session time / samples with the inputs
tokenised beforehand (PaddleNLP's definition), "end to end" = texts in, probabilities out (tokenising included).
Every model runs in the same rounds (order rotated each round, best round kept), so ratios are side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish, verdict  # noqa: E402

PADDLENLP_ROWS = [  # its multi_label README, CAIL2019 divorce dev, V100 GPU, ms/sample at batch 32
    ("ERNIE 3.0 Medium", "6L-768H-12A", 90.57, 79.36, 1.46),
    ("ERNIE 3.0 Medium pruned 3/4", "6L-768H-9A", 89.94, 79.35, 0.81),
    ("ERNIE 3.0 Medium pruned 2/3", "6L-768H-8A", 89.99, 79.37, 0.75),
    ("ERNIE 3.0 Medium pruned 1/2", "6L-768H-6A", 89.19, 76.35, 0.61),
    ("ERNIE 3.0 Mini", "6L-384H-12A", 89.27, 76.78, 0.56),
    ("ERNIE 3.0 Micro", "4L-384H-12A", 89.43, 77.20, 0.34),
    ("ERNIE 3.0 Nano", "4L-312H-12A", 85.39, 75.07, 0.32)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--work_dir", default="runs/model_effects")
    p.add_argument("--params_path", default="runs/accuracy-divorce-m3e-small",
                   help="the unpruned fine-tuned checkpoint; trained with the defaults when missing")
    p.add_argument("--prune_epochs", type=int, default=3, help="the measured run used 3 (about 55 min here)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    return p.parse_args(argv)


def run(cmd: list[str], log: Path) -> float:
    """Run a labelwise command (its output to ``log``); seconds taken."""
    start = time.perf_counter()
    with log.open("w") as handle:
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def build_models(args) -> tuple[dict[str, Path], list[str]]:
    """name → checkpoint folder, building what is missing; and a line per model saying built or cached."""
    work, notes = Path(args.work_dir), []
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "labelwise", "-q"]
    base = Path(args.params_path)
    if not (base / "labelwise.json").exists():
        seconds = run(cli + ["train", "--dataset_dir", args.dataset_dir, "--save_dir", str(base)], work / "train.log")
        notes.append(f"m3e-small: trained with the defaults in {seconds / 60:.0f} min ({base})")
    else:
        notes.append(f"m3e-small: cached ({base})")
    models = {"m3e-small": base}
    jobs = [("width", ["--width_mult_list", "3/4", "1/2"], {"m3e-small width 3/4": "width_mult_0.75",
                                                              "m3e-small width 1/2": "width_mult_0.5"}),
            ("depth", ["--width_mult_list", "1", "--depth_mult_list", "1/2"],
             {"m3e-small depth 1/2": "width_mult_1_depth_mult_0.5"})]
    for job, flags, outputs in jobs:
        out = work / f"prune-{job}"
        if all((out / folder / "labelwise.json").exists() for folder in outputs.values()):
            notes.append(f"{', '.join(outputs)}: cached ({out})")
        else:
            seconds = run(cli + ["prune", "--params_path", str(base), "--dataset_dir", args.dataset_dir,
                                 "--output_dir", str(out), "--num_train_epochs", str(args.prune_epochs), *flags],
                          work / f"prune-{job}.log")
            notes.append(f"{', '.join(outputs)}: pruned in {seconds / 60:.0f} min, {args.prune_epochs} epochs ({out})")
        models.update({name: out / folder for name, folder in outputs.items()})
    return models, notes


def export(name: str, folder: Path, work: Path) -> Path:
    from labelwise.compress.export import export_onnx, read_export_info

    target = work / "export" / name.replace(" ", "_").replace("/", "-")
    info = read_export_info(target)
    if info.get("source_checkpoint") == str(folder.resolve()) and (target / "model.int8.onnx").exists():
        return target
    export_onnx(folder, target, quantize="int8")
    return target


def structure_of(folder: Path) -> tuple[str, int]:
    """"4L-512H-8A-2048F" (layers, hidden, heads, FFN) and the parameter count of a checkpoint."""
    from safetensors import safe_open

    config = json.loads((folder / "encoder" / "config.json").read_text())
    params = 0
    for path in (folder / "encoder" / "model.safetensors", folder / "head.safetensors"):
        with safe_open(str(path), "np") as handle:
            params += sum(int(np.prod(handle.get_slice(k).get_shape())) for k in handle.keys())
    return (f"{config['num_hidden_layers']}L-{config['hidden_size']}H-{config['num_attention_heads']}A-"
            f"{config['intermediate_size']}F", params)


def time_models(exports: dict[str, Path], texts: list[str], batch_size: int, rounds: int) -> dict[str, dict]:
    """Best-of-rounds seconds for each (model, precision): session only, and end to end."""
    from labelwise.predict.batching import encode, iter_batches
    from labelwise.predict.classifier import Classifier

    runs = {}
    for name, folder in exports.items():
        for precision in ("fp32", "int8"):
            clf = Classifier.load(folder, backend="onnx", precision=precision, device="cpu")
            encoded = encode(clf.tokenizer, texts, clf.max_seq_length)
            batches = [b for _, b in iter_batches(encoded, batch_size, clf.tokenizer.pad_token_id or 0)]
            clf.predict_proba(texts[:64], batch_size=batch_size)  # warm-up
            runs[(name, precision)] = {"clf": clf, "batches": batches, "model": [], "e2e": []}
    keys = list(runs)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            item = runs[key]
            start = time.perf_counter()
            for batch in item["batches"]:
                item["clf"].backend.logits(batch)
            item["model"].append(time.perf_counter() - start)
            start = time.perf_counter()
            item["probs"] = item["clf"].predict_proba(texts, batch_size=batch_size)
            item["e2e"].append(time.perf_counter() - start)
            print(f"round {r + 1}: {key[0]} {key[1]}: {item['model'][-1]:.1f} s model, {item['e2e'][-1]:.1f} s e2e",
                  file=sys.stderr, flush=True)
    n = len(texts)
    return {key: {"model_ms": 1000 * min(v["model"]) / n, "e2e_ms": 1000 * min(v["e2e"]) / n, "probs": v["probs"]}
            for key, v in runs.items()}


def main(argv=None) -> str:
    args = parse_args(argv)
    from labelwise.data.dataset import load_dataset, multi_hot
    from labelwise.evaluation.metrics import evaluate_predictions
    from labelwise.training.baseline import fit_baseline

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    models, notes = build_models(args)
    work = Path(args.work_dir)
    ds = load_dataset(args.dataset_dir)
    texts, y_dev = [e.text for e in ds.dev], multi_hot(ds.dev, ds.labels)
    exports = {name: export(name, folder, work) for name, folder in models.items()}
    load_before = os.getloadavg()[0]
    timings = time_models(exports, texts, args.batch_size, args.rounds)
    load_after = os.getloadavg()[0]

    baseline, _ = fit_baseline(ds.train, ds.dev, [], ds.labels)
    from labelwise.training.baseline import LinearBaseline

    svm = LinearBaseline().fit([e.text for e in ds.train], multi_hot(ds.train, ds.labels))
    start = time.perf_counter()
    svm.predict(texts)
    svm_ms = 1000 * (time.perf_counter() - start) / len(texts)
    rows = [{"name": "TF-IDF + linear SVM (built-in baseline)", "structure": svm.describe(),
             "micro": baseline["dev@0.5"]["micro_f1"], "macro": baseline["dev@0.5"]["macro_f1"], "fp32": svm_ms,
             "e2e": svm_ms}]
    for name, folder in models.items():
        meta = json.loads((folder / "labelwise.json").read_text(encoding="utf-8"))
        structure, params = structure_of(folder)
        int8 = evaluate_predictions(y_dev, timings[(name, "int8")]["probs"], ds.labels, 0.5)
        rows.append({"name": name, "structure": structure, "params": params,
                     "micro": meta["metrics"]["dev@0.5"]["micro_f1"], "macro": meta["metrics"]["dev@0.5"]["macro_f1"],
                     "int8_micro": int8["micro"]["f1"], "int8_macro": int8["macro"]["f1"],
                     "fp32": timings[(name, "fp32")]["model_ms"], "int8": timings[(name, "int8")]["model_ms"],
                     "e2e": timings[(name, "fp32")]["e2e_ms"], "e2e_int8": timings[(name, "int8")]["e2e_ms"],
                     "mib": (exports[name] / "model.onnx").stat().st_size / 2**20,
                     "mib_int8": (exports[name] / "model.int8.onnx").stat().st_size / 2**20})
    section = format_section(args, rows, notes, len(texts), started, load_before, load_after)
    return publish(section, args.write)


def format_section(args, rows, notes, n, started, load_before, load_after) -> str:
    cmd = "python benchmarks/compression/model_effects.py " + " ".join(sys.argv[1:])
    lines = [f"## Model effects: F1, latency and size by model and pruning ({started})", "",
             f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
             f"Data: {args.dataset_dir} dev, {n} texts; F1 at threshold 0.5 (PaddleNLP's protocol); ONNX Runtime "
             f"CPU, batch {args.batch_size}, best of {args.rounds} rounds, all models in the same rounds  ",
             f"Load average (1 min) before/after timing: {load_before:.1f} / {load_after:.1f}  ",
             "Models: " + "; ".join(notes), "",
             "| model | structure | params | micro-F1 | macro-F1 | int8 micro / macro | ms/sample fp32 (model) "
             "| ms/sample int8 (model) | ms/sample fp32 / int8 (with tokenising) | ONNX fp32 / int8 MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "int8" not in r:
            lines.append(f"| {r['name']} | {r['structure']} | | {r['micro']:.2f} | {r['macro']:.2f} | | "
                         f"| | {r['e2e']:.2f} (predict, sparse features) | |")
            continue
        lines.append(f"| {r['name']} | {r['structure']} | {r['params'] / 1e6:.1f}M | {r['micro']:.2f} | "
                     f"{r['macro']:.2f} | {r['int8_micro']:.2f} / {r['int8_macro']:.2f} | {r['fp32']:.2f} | "
                     f"{r['int8']:.2f} | {r['e2e']:.2f} / {r['e2e_int8']:.2f} | {r['mib']:.0f} / {r['mib_int8']:.0f} |")
    for name, structure, micro, macro, ms in PADDLENLP_ROWS:
        lines.append(f"| PaddleNLP: {name} (published, V100 GPU) | {structure} | | {micro:.2f} | {macro:.2f} | | "
                     f"{ms:.2f} (GPU) | | | |")
    by = {r["name"]: r for r in rows}
    full, w34, w12 = by["m3e-small"], by["m3e-small width 3/4"], by["m3e-small width 1/2"]

    def loss(r, limit_micro, limit_macro) -> str:
        dm, dM = full["micro"] - r["micro"], full["macro"] - r["macro"]
        ok = dm <= limit_micro and dM <= limit_macro
        return (f"{verdict(ok)} (loses {dm:.2f} micro / {dM:.2f} macro; "
                f"bar {limit_micro} / {limit_macro})")

    ratio = w12["int8"] / full["int8"]
    lines += ["", f"Targets: width 3/4 {loss(w34, 0.7, 0.5)}; width 1/2 {loss(w12, 1.5, 3.0)}; width 1/2 int8 "
              f"ms/sample {ratio:.2f}× the unpruned int8 (bar 0.6×): {verdict(ratio <= 0.6)}.",
              "PaddleNLP lost 0.63 / 0.01 (3/4) and 1.38 / 3.01 (1/2) against ERNIE 3.0 Medium."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
