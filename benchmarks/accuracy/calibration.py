"""Calibration: per-label temperature scaling, fitted on held-out texts, measured on others.

    python benchmarks/accuracy/calibration.py --params_path CKPT --dataset_dir data/divorce [--write]

The checkpoint's raw scores (its stored calibration is ignored) on dev and test. With a test split: temperatures
and thresholds fitted on dev, everything measured on test. Without one (divorce): dev in two halves (seed 0),
fitted on one and measured on the other, both ways, figures averaged. Reports ECE (%), micro / macro-F1 at 0.5
and at thresholds tuned on the fitting half (as training tunes them), raw vs calibrated.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish, run_started, verdict  # noqa: E402


def _measure(y_fit, p_fit, y_eval, p_eval, labels) -> dict:
    from labelwise.evaluation.calibration import apply_temperatures, ece, fit_temperatures
    from labelwise.evaluation.decision import logit, sigmoid
    from labelwise.evaluation.metrics import evaluate_predictions, tune_thresholds

    temperatures = fit_temperatures(y_fit, logit(p_fit, eps=1e-7))
    calibrated = {"fit": sigmoid(apply_temperatures(logit(p_fit, eps=1e-7), temperatures)),
                  "eval": sigmoid(apply_temperatures(logit(p_eval, eps=1e-7), temperatures))}
    out = {"temperatures": temperatures}
    for name, fit, ev in (("raw", p_fit, p_eval), ("calibrated", calibrated["fit"], calibrated["eval"])):
        thresholds = tune_thresholds(y_fit, fit)
        tuned = evaluate_predictions(y_eval, ev, labels, thresholds)
        half = evaluate_predictions(y_eval, ev, labels, 0.5)
        out[name] = {"ece": 100 * ece(y_eval, ev)[0], "ece_fit": 100 * ece(y_fit, fit)[0],
                     "micro": tuned["micro"]["f1"], "macro": tuned["macro"]["f1"],
                     "micro05": half["micro"]["f1"], "macro05": half["macro"]["f1"]}
    return out


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params_path", required=True)
    p.add_argument("--dataset_dir", required=True)
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    started, load = run_started()
    from labelwise.data.dataset import load_dataset, multi_hot
    from labelwise.predict.classifier import Classifier

    clf = Classifier.load(args.params_path)
    clf.temperatures = None  # the raw scores
    ds = load_dataset(args.dataset_dir, require=("dev",))
    splits = {"dev": ds.dev, **({"test": ds.test} if ds.test else {})}
    probs = {s: clf.predict_proba([e.text for e in v], batch_size=64) for s, v in splits.items()}
    y = {s: multi_hot(v, ds.labels) for s, v in splits.items()}
    if "test" in probs:
        protocol = "temperatures and thresholds fitted on dev, measured on test"
        runs = [_measure(y["dev"], probs["dev"], y["test"], probs["test"], ds.labels)]
    else:
        protocol = "dev in two halves (seed 0): fitted on one, measured on the other, both ways, averaged"
        order = np.random.default_rng(0).permutation(len(y["dev"]))
        a, b = order[: len(order) // 2], order[len(order) // 2:]
        runs = [_measure(y["dev"][f], probs["dev"][f], y["dev"][e], probs["dev"][e], ds.labels) for f, e in
                ((a, b), (b, a))]
    mean = {k: {m: float(np.mean([r[k][m] for r in runs])) for m in runs[0][k]} for k in ("raw", "calibrated")}
    temps = np.concatenate([r["temperatures"] for r in runs])
    rows = [f"| {name} | {m['ece']:.2f} | {m['micro']:.2f} / {m['macro']:.2f} | {m['micro05']:.2f} / {m['macro05']:.2f} |"
            for name, m in (("raw scores", mean["raw"]), ("temperature-scaled", mean["calibrated"]))]
    d = {k: mean["calibrated"][k] - mean["raw"][k] for k in mean["raw"]}
    section = "\n".join([
        f"## Calibration: per-label temperature scaling, {Path(args.dataset_dir).name} ({started})", "",
        f"Command: `python benchmarks/accuracy/calibration.py {' '.join(sys.argv[1:] if argv is None else argv)}`  ",
        f"Machine: {machine()}; load average (1 min) {load:.1f}  ",
        f"Model: {args.params_path} ({clf.meta.base_model}); {protocol}.", "",
        "| scores | ECE % (measured) | micro / macro-F1, tuned thresholds | micro / macro-F1 at 0.5 |",
        "|---|---:|---:|---:|", *rows, "",
        f"Temperatures: median {np.median(temps):.2f}, range {temps.min():.2f}–{temps.max():.2f} (1 = unchanged; "
        f"> 1: the model was over-confident). Change: ECE {d['ece']:+.2f} points, tuned micro / macro "
        f"{d['micro']:+.2f} / {d['macro']:+.2f}, at 0.5 {d['micro05']:+.2f} / {d['macro05']:+.2f}. Target (F1 not "
        f"lower at the tuned thresholds): {verdict(min(d['micro'], d['macro']) >= -0.1)}.", ""])
    return publish(section, args.write)


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
