"""Active learning, simulated: which texts to annotate next, strategy against strategy, gold labels as the annotator.

    python benchmarks/label_efficiency/active_learning.py --dataset_dir data/divorce [--seeds 3] [--write]
    python benchmarks/label_efficiency/active_learning.py --dataset_dir data/goemotions --model_name all-minilm-l6-v2 [--write]

Start: PaddleNLP's few-shot draw (4 examples of every label, benchmarks/label_efficiency/few_shot.py's `draw`, seed = draw number).
Each round adds --step texts chosen from the rest of train.txt by a strategy of `labelwise select`
(labelwise.select.strategies: random, auto = each label's most doubtful text in turn, uncertainty, cardinality,
diversity), "annotates" them with their gold labels, and retrains, up to --budget labelled texts.
VARIANTS are ways of mixing diversity or rare labels into the uncertain batches that were measured against plain
uncertainty before choosing `auto` (`--strategies ... kcenter2n dedup95 blend30 blend50 blend70 rare1 rare05
likely`); none is shipped. One fixed test
set: test.txt, or dev.txt where there is no test split (divorce).

How a round retrains (measured, see the section): a logistic head on frozen vectors (the encoder's mean-pooled
vectors of every text, computed once; labelwise.analysis.dirty.fit_linear_head), which takes about a second a
round on 2 cores where a fine-tune of m3e-small takes minutes; selection needs a model that ranks texts, not the
best model. The figures are test micro/macro-F1 of that head at one threshold tuned on the draw's dev texts
(--threshold dev; 0.5 was used before: GoEmotions' probabilities rarely reach it). --finetune also fine-tunes the encoder
(`labelwise train` defaults) on the final labelled set of random and auto, seed 0, to show the labels carry over.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, parser, publish, run_started  # noqa: E402
from few_shot import draw, write_split  # noqa: E402

STRATEGIES = ("random", "auto", "uncertainty", "cardinality", "diversity")
VARIANTS = ("kcenter2n", "dedup95", "blend30", "blend50", "blend70", "rare1", "rare05", "likely")
LMBD = 1e-3  # L2 strength of the frozen-vector head (the value labelwise's dirty-data head uses)


def parse_args(argv=None):
    p = parser(__doc__, "dataset_dir", "model_name", "seeds")
    p.add_argument("--step", type=int, default=100, help="texts annotated per round")
    p.add_argument("--budget", type=int, default=1000, help="stop at about this many labelled texts")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                   choices=[name + cal for name in STRATEGIES + VARIANTS for cal in ("", CALIBRATED)],
                   help=f"a name{CALIBRATED} ranks on per-label calibrated scores (temperatures fitted on the draw's "
                        "dev texts each round)")
    p.add_argument("--threshold", default="dev", choices=["dev", "0.5"],
                   help="dev: one threshold for all labels tuned on the draw's dev texts each round; 0.5: fixed")
    p.add_argument("--max_pool", type=int, default=None, help="a random subset of train as the pool (smoke runs)")
    p.add_argument("--max_test", type=int, default=None)
    p.add_argument("--cache", default="runs/al_cache", help="vectors are computed once and kept here")
    p.add_argument("--finetune", action="store_true", help="also fine-tune on the final sets of random and auto")
    p.add_argument("--retrain", default="head", choices=["head", "finetune"],
                   help="head: a frozen-vector head each round; finetune: fine-tune the encoder every "
                        "--finetune_every rounds (warm start from the last round's checkpoint), the rounds between "
                        "fit the head on the fine-tuned encoder's vectors")
    p.add_argument("--finetune_every", type=int, default=2, help="with --retrain finetune: rounds per fine-tune")
    p.add_argument("--ft_epochs", type=int, default=3, help="with --retrain finetune: epochs of each fine-tune")
    p.add_argument("--plot", default=None, help="PNG of the learning curves (default benchmarks/active_learning_<data>.png)")
    p.add_argument("--out", default=None, help="also write the per-round numbers here (JSON)")
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    return p.parse_args(argv)


def vectors_of(texts: list[str], model_name: str, cache: Path, tag: str) -> np.ndarray:
    from labelwise.predict.classifier import Classifier
    from labelwise.predict.retrieval import open_encoder

    path = cache / f"{tag}.npy"
    if path.exists():
        return np.load(path)
    encoder = Classifier(*open_encoder(model_name))
    vectors = encoder.features(texts, batch_size=64, progress=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def pool_and_test(ds, max_pool: int | None = None, max_test: int | None = None) -> tuple[list, list, str]:
    """(pool, test, test file name): the pool is train (a seeded random ``max_pool`` of it), the test set test.txt or,
    where there is none, dev.txt (its first ``max_test`` texts)."""
    test = ds.test or ds.dev
    pool = ds.train if max_pool is None else \
        [ds.train[i] for i in np.sort(np.random.default_rng(0).choice(len(ds.train), max_pool, replace=False))]
    return pool, test if max_test is None else test[:max_test], "test.txt" if ds.test else "dev.txt"


def frozen_vectors(args, name: str, pool, test) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's vectors of the pool and test texts (kept in --cache, computed once)."""
    return tuple(vectors_of([e.text for e in texts], args.model_name, Path(args.cache),
                            f"{name}-{args.model_name}-{kind}{len(texts)}")
                 for kind, texts in (("pool", pool), ("test", test)))


def fit_predict(x_train, y_train, x_eval: list[np.ndarray]) -> list[np.ndarray]:
    from labelwise.analysis.dirty import fit_linear_head
    from labelwise.evaluation.decision import sigmoid

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small matrices: BLAS threads only wait on each other (46 s vs 0.3 s a fit, loaded)
        w = fit_linear_head(x_train, y_train, LMBD, max_iter=500)
    return [sigmoid(np.hstack([x, np.ones((len(x), 1))]) @ w) for x in x_eval]


def f1s(y, probs, threshold: float = 0.5) -> tuple[float, float]:
    from labelwise.evaluation.metrics import f1_scores

    return f1_scores(y, (probs >= threshold).astype(np.int8))


class HeadRounds:
    """Each round's model: the frozen-vector head on fixed vectors (``x_pool``, ``x_test``)."""

    def __init__(self, x_pool, x_test, y_pool):
        self.x_pool, self.x_test, self.y_pool = x_pool, x_test, y_pool

    def fit(self, round_no: int, labelled: list[int], rest, outside, last: bool = False) -> tuple:
        """(test, rest, dev) probabilities of the round's model, and whether it was fine-tuned; ``last``: the
        final round."""
        probs = fit_predict(self.x_pool[labelled], self.y_pool[labelled],
                            [self.x_test, self.x_pool[rest], self.x_pool[outside]])
        return (*probs, False)


class FinetuneRounds(HeadRounds):
    """Every ``every``-th round fine-tunes the encoder on the labelled texts (`labelwise.train`, ``epochs`` epochs,
    warm start from the previous fine-tune's checkpoint, the draw's dev texts as dev) and scores the pool and test
    with it; the rounds between fit the frozen-vector head on that fine-tuned encoder's vectors."""

    def __init__(self, args, ds, pool, test, y_pool, work: Path):
        super().__init__(None, None, y_pool)
        self.args, self.ds, self.pool, self.test, self.work = args, ds, pool, test, work
        self.checkpoint, self.minutes = None, []

    def fit(self, round_no, labelled, rest, outside, last=False):
        if round_no % self.args.finetune_every and self.x_pool is not None and not last:
            return super().fit(round_no, labelled, rest, outside)
        start = time.perf_counter()
        clf = finetune_on(self.args, self.ds, [self.pool[i] for i in labelled], [self.pool[i] for i in outside],
                          self.work / f"round{round_no}", self.checkpoint, self.args.ft_epochs)
        if self.checkpoint:
            import shutil

            shutil.rmtree(Path(self.checkpoint).parent)  # one checkpoint on disk at a time
        self.checkpoint = str(clf.path)
        texts = [e.text for e in self.test] + [self.pool[i].text for i in rest] + [self.pool[i].text for i in outside]
        probs = clf.predict_proba(texts, batch_size=64)
        if self.args.finetune_every > 1:  # the vectors the head of the rounds between reads
            self.x_test = clf.features([e.text for e in self.test], batch_size=64)
            self.x_pool = clf.features([e.text for e in self.pool], batch_size=64)
        self.minutes.append((time.perf_counter() - start) / 60)
        n_test, n_rest = len(self.test), len(rest)
        return probs[:n_test], probs[n_test:n_test + n_rest], probs[n_test + n_rest:], True


def simulate(strategy: str, seed: int, start: list[int], dev: list[int], rounds: HeadRounds, y_pool, y_test,
             args) -> dict:
    from labelwise.select.strategies import rank

    rng = np.random.default_rng(1000 + seed)
    labelled = list(start)
    rows, seconds = [], []
    mean_labels = float(y_pool[start].sum(1).mean())
    outside = np.asarray(sorted(set(dev)), dtype=np.int64)  # the draw's dev texts are never offered for annotation
    while True:
        t0 = time.perf_counter()
        rest = np.setdiff1d(np.setdiff1d(np.arange(len(y_pool)), labelled), outside)
        last = len(labelled) >= args.budget or not len(rest)
        probs_test, probs_rest, probs_dev, tuned = rounds.fit(len(rows), labelled, rest, outside, last)
        threshold = 0.5 if args.threshold == "0.5" else dev_threshold(y_pool[outside], probs_dev)
        micro, macro = f1s(y_test, probs_test, threshold)
        rows.append({"labelled": len(labelled), "micro": micro, "macro": macro, "threshold": threshold,
                     "finetuned": tuned})
        if tuned:
            print(f"  seed {seed} {strategy}: {len(labelled)} labels, fine-tuned → {micro:.2f} / {macro:.2f} "
                  f"({(time.perf_counter() - t0) / 60:.1f} min)", file=sys.stderr, flush=True)
        if last:
            break
        step = min(args.step, args.budget - len(labelled), len(rest))
        thresholds = np.full(y_pool.shape[1], threshold)
        if strategy.endswith(CALIBRATED):  # rank on calibrated scores; the reported F1 stays the model's own
            probs_rest, thresholds = calibrated(y_pool[outside], probs_dev, probs_rest, args.threshold)
        if strategy.removesuffix(CALIBRATED) in VARIANTS:
            chosen = variant_rank(strategy.removesuffix(CALIBRATED), step, probs_rest, rounds.x_pool[rest], thresholds,
                                  y_pool[labelled])
        else:
            chosen, _ = rank(strategy.removesuffix(CALIBRATED), step, probs=probs_rest, thresholds=thresholds,
                             vectors=rounds.x_pool[rest] if strategy.startswith("diversity") else None,
                             mean_labels=mean_labels, rng=rng)
        labelled += [int(rest[i]) for i in chosen]
        seconds.append(time.perf_counter() - t0)
    return {"rows": rows, "seconds_per_round": float(np.mean(seconds)) if seconds else 0.0, "labelled": labelled}


CALIBRATED = "+cal"  # a strategy name + this: it ranks on scores calibrated on the draw's dev each round


def calibrated(y_dev, probs_dev, probs_rest, threshold_rule: str) -> tuple[np.ndarray, np.ndarray]:
    """The pool's scores through per-label temperatures fitted on the draw's dev texts (labelwise's calibration,
    labels with 4+ dev positives: the draw has 4 per label), and the threshold tuned again on the calibrated dev."""
    from labelwise.evaluation.calibration import apply_temperatures, fit_temperatures
    from labelwise.evaluation.decision import logit, sigmoid

    temperatures = fit_temperatures(y_dev, logit(probs_dev, eps=1e-7), min_positives=4)
    dev = sigmoid(apply_temperatures(logit(probs_dev, eps=1e-7), temperatures))
    threshold = 0.5 if threshold_rule == "0.5" else dev_threshold(y_dev, dev)
    rest = sigmoid(apply_temperatures(logit(probs_rest, eps=1e-7), temperatures))
    return rest, np.full(y_dev.shape[1], threshold)


THRESHOLD_NOTE = {"0.5": "0.5", "dev": "one threshold for all labels, tuned each round on the draw's dev texts "
                                    "(4 per label, never offered for annotation)"}


def dev_threshold(y_dev: np.ndarray, probs_dev: np.ndarray) -> float:
    """One threshold for every label, the one of 0.05 … 0.95 with the best micro-F1 on the draw's dev texts (4 per
    label, PaddleNLP's few-shot dev), as a user's checkpoint would have tuned thresholds; ties go to the higher."""
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    scores = [f1s(y_dev, probs_dev, t)[0] for t in grid]
    return float(grid[len(grid) - 1 - int(np.argmax(scores[::-1]))])


def rare_quota(n: int, probs: np.ndarray, thresholds: np.ndarray, y_labelled: np.ndarray, power: float) -> np.ndarray:
    """`auto`'s turns (each label's most doubtful text), but each label's share of the batch ∝ 1 / (its labelled
    positives + 1) ** power, the rarest label first; what the shares leave over goes as `auto` picks."""
    from labelwise.select.strategies import by_label, margins

    positives = y_labelled.sum(axis=0)
    weight = 1.0 / (positives + 1.0) ** power
    quota = np.maximum(1, np.round(n * weight / weight.sum())).astype(int)
    order = np.argsort(margins(probs, thresholds), axis=0, kind="stable")
    chosen: dict[int, None] = {}
    for label in np.argsort(positives, kind="stable"):
        picked = [int(i) for i in order[:, label] if int(i) not in chosen][:quota[label]]
        chosen.update(dict.fromkeys(picked))
    if len(chosen) < n:  # the shares rounded down: `auto`'s turns fill the batch
        fill = by_label(probs, thresholds, n + len(chosen))  # holds at least n texts not chosen yet
        chosen.update(dict.fromkeys(int(i) for i in fill if int(i) not in chosen))
    return np.asarray(list(chosen)[:n])


def variant_rank(name: str, n: int, probs: np.ndarray, vectors: np.ndarray, thresholds: np.ndarray,
                 y_labelled: np.ndarray) -> np.ndarray:
    """The measured-and-rejected mixes (see VARIANTS): row indices of ``n`` texts to annotate next."""
    from labelwise.select.strategies import by_label, diverse_pick, uncertainty

    if name.startswith("rare"):  # rare1, rare05: rarer labels get more of the batch
        return rare_quota(n, probs, thresholds, y_labelled, 1.0 if name == "rare1" else 0.5)
    if name == "likely":  # each label in turn takes its most probable text (likely positives, not doubtful ones)
        return np.asarray(list(dict.fromkeys(np.argsort(-probs, axis=0, kind="stable").ravel().tolist()))[:n])

    order = np.argsort(-uncertainty(probs, thresholds), kind="stable")
    if name == "kcenter2n":  # k-center over the 2·n most uncertain texts
        return diverse_pick(vectors, n, uncertainty(probs, thresholds), candidates=2 * n)
    if name == "dedup95":  # most uncertain first, skipping a text at cosine >= 0.95 to one already in the batch
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        chosen: list[int] = []
        for i in order:
            if not chosen or float((unit[chosen] @ unit[i]).max()) < 0.95:
                chosen.append(int(i))
            if len(chosen) == n:
                break
        return np.asarray(chosen)
    share = int(name.removeprefix("blend")) / 100  # blend30/50/70: that share as `auto` picks, then uncertainty
    chosen = by_label(probs, thresholds, round(share * n)).tolist()
    taken = set(chosen)
    chosen += [int(i) for i in order if int(i) not in taken][:n - len(chosen)]
    return np.asarray(chosen)


def labels_to_reach(curve: list[dict], target: float, metric: str) -> float | None:
    """Labelled texts at which the (mean) curve first reaches ``target`` (linear between rounds); None if never."""
    for a, b in zip(curve, curve[1:]):
        if a[metric] >= target:
            return a["labelled"]
        if b[metric] >= target:
            return a["labelled"] + (target - a[metric]) / max(b[metric] - a[metric], 1e-9) * (b["labelled"] - a["labelled"])
    return curve[0]["labelled"] if curve and curve[0][metric] >= target else None


def mean_curve(runs: list[dict]) -> list[dict]:
    size = min(len(r["rows"]) for r in runs)
    out = []
    for i in range(size):
        out.append({"labelled": runs[0]["rows"][i]["labelled"],
                    **{m: float(np.mean([r["rows"][i][m] for r in runs])) for m in ("micro", "macro")},
                    **{f"{m}_std": float(np.std([r["rows"][i][m] for r in runs])) for m in ("micro", "macro")}})
    return out


def finetune_on(args, ds, labelled_examples, dev_examples, work: Path, init_from: str | None = None,
                epochs: int | None = None):
    """The classifier `labelwise.train` makes of these examples (a folder under ``work``); ``epochs`` None: the
    defaults, else that many (--ft_epochs); ``init_from``: warm start from that checkpoint."""
    from labelwise.training import TrainConfig, train

    folder = work / "ft"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.txt").write_text("\n".join(ds.labels) + "\n", encoding="utf-8")
    write_split(folder, "train.txt", labelled_examples)
    write_split(folder, "dev.txt", dev_examples)
    return train(TrainConfig(dataset_dir=str(folder), save_dir=str(folder / "ckpt"),
                             model_name=None if init_from else args.model_name, init_from_ckpt=init_from,
                             epochs=epochs, progress=False, baseline=False)).classifier


def finetune(args, ds, labelled_examples, dev_examples, test, work: Path) -> dict:
    from labelwise.data.dataset import multi_hot

    start = time.perf_counter()
    clf = finetune_on(args, ds, labelled_examples, dev_examples, work)
    probs = clf.predict_proba([e.text for e in test])
    y = multi_hot(test, ds.labels)
    from labelwise.evaluation.metrics import f1_scores

    micro, macro = f1_scores(y, (probs >= clf.thresholds).astype(np.int8))
    return {"micro": micro, "macro": macro, "minutes": (time.perf_counter() - start) / 60}


def main(argv=None) -> str:
    import tempfile

    from labelwise.data.dataset import load_dataset, multi_hot

    args = parse_args(argv)
    started, load_before = run_started()
    ds = load_dataset(args.dataset_dir)
    name = Path(args.dataset_dir).name
    pool, test, test_name = pool_and_test(ds, args.max_pool, args.max_test)
    t0 = time.perf_counter()
    y_pool, y_test = multi_hot(pool, ds.labels), multi_hot(test, ds.labels)
    if args.retrain == "head":
        x_pool, x_test = frozen_vectors(args, name, pool, test)
    embed_minutes = (time.perf_counter() - t0) / 60
    results = {s: [] for s in args.strategies}
    work = tempfile.TemporaryDirectory(dir="runs" if Path("runs").is_dir() else None)
    for seed in range(args.seeds):
        start, dev_idx = draw(pool, ds.labels, 4, np.random.default_rng(seed))
        for strategy in args.strategies:
            rounds = HeadRounds(x_pool, x_test, y_pool) if args.retrain == "head" else \
                FinetuneRounds(args, ds, pool, test, y_pool, Path(work.name) / f"{strategy}{seed}")
            run = simulate(strategy, seed, start, dev_idx, rounds, y_pool, y_test, args)
            if args.retrain == "finetune":  # the curve is the fine-tuned rounds' F1 (the rounds between only pick)
                run["rows"] = [r for r in run["rows"] if r["finetuned"]]
                run["finetune_minutes"] = float(np.mean(rounds.minutes))
            results[strategy].append(run)
            last = run["rows"][-1]
            print(f"seed {seed} {strategy}: {last['labelled']} labels → {last['micro']:.2f} / {last['macro']:.2f} "
                  f"({run['seconds_per_round']:.1f} s/round)", file=sys.stderr, flush=True)
    tuned = {}
    if args.finetune:
        start, dev_idx = draw(pool, ds.labels, 4, np.random.default_rng(0))
        with tempfile.TemporaryDirectory() as scratch:
            for strategy in ("random", "auto"):
                if strategy in results:
                    chosen = [pool[i] for i in results[strategy][0]["labelled"] if i not in set(dev_idx)]
                    tuned[strategy] = finetune(args, ds, chosen, [pool[i] for i in dev_idx], test,
                                               Path(scratch) / strategy)
                    print(f"fine-tuned on {strategy}: {tuned[strategy]}", file=sys.stderr, flush=True)
    curves = {s: mean_curve(runs) for s, runs in results.items()}
    if args.out:
        Path(args.out).write_text(json.dumps({"curves": curves, "finetune": tuned}, indent=1))
    plot = Path(args.plot or Path(__file__).resolve().parents[1] / f"active_learning_{name}.png")
    how = "frozen-vector head" if args.retrain == "head" else f"fine-tuned every {args.finetune_every} rounds"
    draw_curves(curves, plot, f"{how}, {name} ({args.model_name}, {len(pool)} pool, test: {test_name})")
    section = format_section(args, curves, results, tuned, embed_minutes, plot, test_name, len(pool), len(test),
                             started, load_before, os.getloadavg()[0])
    return publish(section, args.write)


def draw_curves(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for ax, metric in zip(axes, ("micro", "macro")):
        for strategy, curve in curves.items():
            x = [r["labelled"] for r in curve]
            y = np.array([r[metric] for r in curve])
            s = np.array([r[f"{metric}_std"] for r in curve])
            ax.plot(x, y, marker="o", markersize=3, label=strategy, linewidth=2 if strategy in ("auto", "random") else 1)
            ax.fill_between(x, y - s, y + s, alpha=0.12)
        ax.set_xlabel("labelled texts")
        ax.set_ylabel(f"test {metric}-F1 (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Active learning: {title}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def retrain_note(args, results) -> str:
    if args.retrain == "head":
        return "frozen-vector logistic head each round"
    minutes = np.mean([run["finetune_minutes"] for runs in results.values() for run in runs])
    return (f"the encoder fine-tuned every {args.finetune_every} rounds (`labelwise.train`, {args.ft_epochs} epochs, "
            f"warm start from the previous fine-tune; {minutes:.1f} min per fine-tune with scoring the pool), "
            "the rounds between fit the frozen-vector head on the fine-tuned encoder's vectors; the columns are the "
            "fine-tuned rounds")


def format_section(args, curves, results, tuned, embed_minutes, plot, test_name, pool_size, test_size, started,
                   load_before, load_after) -> str:
    name = Path(args.dataset_dir).name
    cmd = "python benchmarks/label_efficiency/active_learning.py " + " ".join(sys.argv[1:])
    random_curve = curves.get("random")
    kind = "" if args.retrain == "head" else f", the encoder fine-tuned every {args.finetune_every} rounds"
    lines = [f"## Active learning{kind}: {name} ({started})", "", f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
             f"Encoder {args.model_name} (vectors of {pool_size} pool + {test_size} test texts computed once: "
             f"{embed_minutes:.1f} min); start: 4 examples per label (PaddleNLP's few-shot draw), +{args.step} "
             f"per round to {args.budget}; test: {test_name}; {args.seeds} seeds; {retrain_note(args, results)}, "
             f"F1 at {THRESHOLD_NOTE[args.threshold]}; load average before/after {load_before:.1f} / {load_after:.1f}. "
             f"Picture: [{plot.name}]({plot.name})", ""]
    rounds = [r["labelled"] for r in next(iter(curves.values()))]
    lines += ["| strategy | " + " | ".join(str(n) for n in rounds) + " | area (mean F1) | s/round |",
              "|---|" + "---:|" * (len(rounds) + 2)]
    for strategy, curve in curves.items():
        for metric in ("micro", "macro"):
            cells = " | ".join(f"{r[metric]:.1f}" for r in curve)
            area = np.mean([r[metric] for r in curve])
            secs = np.mean([run["seconds_per_round"] for run in results[strategy]])
            lines.append(f"| {strategy} {metric} | {cells} | {area:.2f} | {secs:.1f} |")
    if random_curve:
        lines += ["", f"Labels needed to reach random's F1 at {random_curve[-1]['labelled']} labels "
                      f"(micro {random_curve[-1]['micro']:.2f}, macro {random_curve[-1]['macro']:.2f}):", "",
                  "| strategy | labels for random's micro-F1 | labels for random's macro-F1 |", "|---|---:|---:|"]
        for strategy, curve in curves.items():
            cells = []
            for metric in ("micro", "macro"):
                n = labels_to_reach(curve, random_curve[-1][metric], metric)
                cells.append("not reached" if n is None else f"{n:.0f} ({n / random_curve[-1]['labelled']:.0%})")
            lines.append(f"| {strategy} | {cells[0]} | {cells[1]} |")
    if tuned:
        lines += ["", "Fine-tuned (`labelwise train` defaults, dev = the draw's other 4 per label, tuned thresholds) "
                      "on seed 0's final labelled set:", "", "| strategy | test micro-F1 | test macro-F1 | minutes |",
                  "|---|---:|---:|---:|"]
        for strategy, r in tuned.items():
            lines.append(f"| {strategy} | {r['micro']:.2f} | {r['macro']:.2f} | {r['minutes']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
