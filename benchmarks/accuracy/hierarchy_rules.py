"""Label trees: which rule settles a child predicted without its parent (`--hierarchy consistent`).

    python benchmarks/accuracy/hierarchy_rules.py [--datasets divorce_tree goemotions_ekman] [--C 1 8] [--write]

A TF-IDF + one-vs-rest logistic regression (scikit-learn; seconds to a minute on a CPU, no encoder) gives
per-label probabilities for each tree in data/; thresholds are 0.5 for every label, and per-label thresholds
tuned on dev by ``tune_thresholds`` (the default recipe of ``labelwise train``). Its decisions then go through
the one decision rule with each hierarchy setting:

* ``none``: the raw per-label decisions (a child may come without its parent);
* ``add``: every chosen child brings its parent;
* ``drop``: a child whose parent is not chosen goes, with its subtree;
* ``sum``: the closed label set with the largest sum of margins logit(p) - logit(threshold).

Scored on test (dev tunes the thresholds), or, for a dataset without test, on the second half of dev with the
first half tuning: micro-/macro-F1 and exact-match accuracy over every node, per level, and how many texts had
a label without its parent. ``--C``: the inverse regularisation strengths (two models of different confidence).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import publish, run_started  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SETTINGS = (("none", "sum"), ("consistent", "add"), ("consistent", "drop"), ("consistent", "sum"))


def score(name: str, cs: list[float]) -> list[dict]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from labelwise.data.dataset import load_dataset, multi_hot
    from labelwise.evaluation.metrics import evaluate_predictions, tune_thresholds
    from labelwise.training.baseline import is_cjk

    ds = load_dataset(REPO / "data" / name)
    dev, test = (ds.dev, ds.test) if ds.test else (ds.dev[:len(ds.dev) // 2], ds.dev[len(ds.dev) // 2:])
    texts = [e.text for e in ds.train]
    cjk = is_cjk(texts)
    vectorizer = TfidfVectorizer(analyzer="char" if cjk else "word", ngram_range=(1, 3) if cjk else (1, 2),
                                 sublinear_tf=True, max_features=200_000)
    x = vectorizer.fit_transform(texts)
    y_dev, y_test = multi_hot(dev, ds.labels), multi_hot(test, ds.labels)
    rows = []
    for c in cs:
        model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=300)).fit(x, multi_hot(ds.train, ds.labels))
        p_dev = model.predict_proba(vectorizer.transform([e.text for e in dev]))
        p_test = model.predict_proba(vectorizer.transform([e.text for e in test]))
        for thresholds_name, thresholds in (("0.5", 0.5), ("tuned", tune_thresholds(y_dev, p_dev))):
            for mode, rule in SETTINGS:
                m = evaluate_predictions(y_test, p_test, ds.labels, thresholds, hierarchy=ds.hierarchy, mode=mode,
                                         rule=rule)
                rows.append({"dataset": name, "C": c, "thresholds": thresholds_name,
                             "rule": rule if mode == "consistent" else "none", "size": m["size"],
                             "micro": m["micro"]["f1"], "macro": m["macro"]["f1"], "accuracy": m["accuracy"],
                             "levels": m["hierarchy"]["levels"], "broken": m["hierarchy"]["inconsistent_before"]})
    return rows


def section(rows: list[dict], command: str, started: str, load: float, seconds: float) -> str:
    from _common import machine

    out = [f"## Label trees: the rule for a child predicted without its parent ({started})", "",
           f"`{command}` — {machine()}; load average {load:.1f} at the start; {seconds:.0f} s.", "",
           "TF-IDF + logistic regression per label (C as given); every figure on test (divorce_tree: the second "
           "half of dev), percent. *broken*: texts whose raw decisions had a label without its parent "
           "(every rule but none leaves 0).", "",
           "| dataset | C | thresholds | rule | micro-F1 | macro-F1 | (micro+macro)/2 | accuracy | "
           "level 1 micro / macro / acc | level 2 micro / macro / acc | broken |",
           "|---|---:|---|---|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        levels = [f"{lv['micro_f1']:.2f} / {lv['macro_f1']:.2f} / {lv['accuracy']:.2f}" for lv in r["levels"][:2]]
        out.append(f"| {r['dataset']} | {r['C']:g} | {r['thresholds']} | {r['rule']} | {r['micro']:.2f} | "
                   f"{r['macro']:.2f} | {(r['micro'] + r['macro']) / 2:.2f} | {r['accuracy']:.2f} | "
                   f"{' | '.join(levels)} | {r['broken']} of {r['size']} |")
    wins: dict[str, int] = {}
    groups = {(r["dataset"], r["C"], r["thresholds"]) for r in rows}
    for key in groups:
        group = [r for r in rows if (r["dataset"], r["C"], r["thresholds"]) == key]
        best = max(group, key=lambda r: (r["micro"] + r["macro"]) / 2)
        wins[best["rule"]] = wins.get(best["rule"], 0) + 1
    out += ["", "Best (micro+macro)/2 per setting: " + ", ".join(f"{rule} {n} of {len(groups)}"
                                                                 for rule, n in sorted(wins.items()))]
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["divorce_tree", "goemotions_ekman"])
    parser.add_argument("--C", nargs="+", type=float, default=[1.0, 8.0], dest="cs")
    parser.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    started, load = run_started()
    start = time.perf_counter()
    rows = [row for name in args.datasets for row in score(name, args.cs)]
    command = "python benchmarks/accuracy/hierarchy_rules.py " + " ".join(sys.argv[1:] if argv is None else argv)
    publish(section(rows, command.strip(), started, load, time.perf_counter() - start), args.write)


if __name__ == "__main__":
    main()
