"""Other heads on the few-shot encoder: is the gap in the head or in the encoder's vectors?

    python benchmarks/label_efficiency/few_shot.py --dataset_dir data/divorce --routes few-shot --probs runs/fs_probs_vec
    python benchmarks/label_efficiency/few_shot_heads.py --probs runs/fs_probs_vec

few_shot.py --probs keeps, for the few-shot route, the vectors its tuned encoder gives the draw's train, dev and
test texts and the label names. Here, per draw, heads that read those same vectors (no training of the encoder):

* the fine-tuned head (the checkpoint's own probabilities);
* nearest label mean: the cosine to the mean unit vector of each label's examples and its name;
* logistic regression, one per label, on the examples and the names (SetFit's one-vs-rest head on our encoder);
* the fine-tuned head and the logistic regression together (their logits added, the regression's at half weight).

Every head's thresholds are tuned on the draw's dev with labelwise's rule; test micro / macro-F1, mean over draws.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def heads(z) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Head name → (dev probabilities, test probabilities) for one draw's stored arrays ``z``."""
    from sklearn.linear_model import LogisticRegression

    from labelwise.evaluation.decision import sigmoid
    from labelwise.predict.search import unit_rows

    n_labels = z["y_test"].shape[1]
    x = np.vstack([z["f_train"], z["f_names"]]).astype(np.float64)
    y = np.vstack([z["y_train"], np.eye(n_labels, dtype=bool)])
    dev, test = z["f_dev"].astype(np.float64), z["f_test"].astype(np.float64)
    out = {"fine-tuned head": (z["dev"].astype(np.float64), z["test"].astype(np.float64))}
    units = unit_rows(x)
    means = unit_rows(np.stack([units[y[:, j]].mean(0) for j in range(n_labels)]))
    spread = units @ means.T  # standardise each label's cosine by its spread over the examples
    centre, scale = spread.mean(0), spread.std(0) + 1e-6
    out["nearest label mean"] = tuple(sigmoid((unit_rows(v) @ means.T - centre) / scale - 2) for v in (dev, test))
    models = [LogisticRegression(C=1.0, max_iter=3000).fit(x, y[:, j]) for j in range(n_labels)]
    out["logistic regression"] = tuple(np.stack([m.predict_proba(v)[:, 1] for m in models], 1) for v in (dev, test))
    out["fine-tuned + 0.5 × regression"] = tuple(sigmoid(logit(a) + 0.5 * logit(b)) for a, b in
                                                 zip(out["fine-tuned head"], out["logistic regression"]))
    return out


def main(argv=None) -> str:
    from labelwise.evaluation.metrics import evaluate_predictions, tune_thresholds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probs", required=True, help="few_shot.py's --probs folder (draw*-few-shot.npz with vectors)")
    args = p.parse_args(argv)
    stored = {f.stem.split("-")[0]: np.load(f) for f in sorted(Path(args.probs).glob("draw*-few-shot.npz"))}
    stored = {draw: z for draw, z in stored.items() if "f_test" in z}
    if not stored:
        sys.exit(f"{args.probs}: no draw*-few-shot.npz with text vectors; run few_shot.py --probs with this version")
    scores: dict[str, list[tuple[float, float]]] = {}
    for z in stored.values():
        for name, (dev, test) in heads(z).items():
            m = evaluate_predictions(z["y_test"], test, list(range(test.shape[1])), tune_thresholds(z["y_dev"], dev))
            scores.setdefault(name, []).append((m["micro"]["f1"], m["macro"]["f1"]))
    lines = [f"Draws: {', '.join(stored)}", "",
             "| head on the few-shot encoder's vectors | test micro-F1 | test macro-F1 |", "|---|---:|---:|"]
    for name, values in scores.items():
        mean = np.mean(values, axis=0)
        lines.append(f"| {name} | {mean[0]:.2f} | {mean[1]:.2f} |")
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
