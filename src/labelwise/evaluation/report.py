"""One self-contained HTML file that explains an evaluation (``labelwise evaluate --report report.html``).

Sections: overall metrics (for a label tree also per level, and the consistency count); for a tree, the tree
with each node's F1 and support; per-label precision / recall / F1 and support, sorted; which labels get swapped
(for each gold label that was missed, which wrong labels were predicted instead); a precision-recall curve
per label with its threshold marked; how many labels per example, predicted vs gold; the bad cases.

Charts that carry label names (the per-label bars, the swap heatmap) are HTML/CSS, so label text is real
text in any script and needs no font on the machine that writes the report; the numeric charts
(precision-recall curves, histogram) are matplotlib PNGs (Agg) embedded as data URIs. No external file,
script or network access: the file can be mailed or archived as is.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.data.dataset import multi_hot
from labelwise.data.hierarchy import Hierarchy
from labelwise.evaluation.choices import describe_choices
from labelwise.evaluation.levels import format_levels
from labelwise.files import atomic_write_text, check_outputs

__all__ = ["write_report", "build_report", "swap_matrix", "escape"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px auto;
max-width:1200px;padding:0 16px;color:#1f2328;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:36px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta{color:#59636e}table{border-collapse:collapse;font-size:14px}td,th{padding:3px 8px;border-bottom:1px solid #eaeef2}
th{background:#f6f8fa;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{height:10px;border-radius:2px;margin:2px 0}.bar.p{background:#4c78a8}.bar.r{background:#f58518}.bar.f{background:#54a24b}
.bars td{vertical-align:middle}.barcell{width:420px}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;
vertical-align:middle}.heat td{width:26px;height:22px;text-align:center;font-size:11px;border:1px solid #fff}
.heat th.col{writing-mode:vertical-rl;text-orientation:mixed;white-space:nowrap;font-weight:normal;vertical-align:bottom;
height:auto;padding:4px 2px}.heat th.row{font-weight:normal;white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px}
.grid figure{margin:0;border:1px solid #eaeef2;padding:6px}.grid img{max-width:100%;height:auto}.grid figcaption{font-size:13px}
.ok{color:#1a7f37}.miss{color:#cf222e;text-decoration:line-through}.wrong{color:#bc4c00;font-weight:600}
.cases td.text{max-width:640px}.note{font-size:13px;color:#59636e}
ul.tree{list-style:none;padding-left:0}ul.tree ul{list-style:none;padding-left:22px;border-left:1px solid #d0d7de}
ul.tree li{margin:2px 0}ul.tree .f1{display:inline-block;width:80px;height:9px;background:#eaeef2;margin:0 6px;
vertical-align:middle}ul.tree .f1 i{display:block;height:9px;background:#54a24b}
"""


# ---- numbers --------------------------------------------------------------------------------------------
def swap_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(L, L+1) counts: row g = gold label g missed; column p = label p wrongly predicted in the same example.

    The last column counts misses where no wrong label was predicted at all.
    """
    y_true, y_pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    missed = (y_true & ~y_pred).astype(np.int64)
    wrong = (y_pred & ~y_true).astype(np.int64)
    nothing = (wrong.sum(axis=1) == 0).astype(np.int64)
    return np.hstack([missed.T @ wrong, (missed.T @ nothing)[:, None]])


# ---- pieces of the page -------------------------------------------------------------------------------------
def escape(text) -> str:
    """Any value as HTML text, quotes included (safe in attributes too)."""
    return html.escape(str(text), quote=True)



def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _overall(metrics: dict) -> str:
    rows = [("Examples", f"{metrics['size']}"), ("Thresholds", escape(metrics.get("thresholds", ""))),
            ("Accuracy (exact match)", f"{metrics['accuracy']:.2f}")]
    for avg in ("micro", "macro"):
        m = metrics[avg]
        rows.append((f"{avg.capitalize()} precision / recall / F1",
                     f"{m['precision']:.2f} / {m['recall']:.2f} / <b>{m['f1']:.2f}</b>"))
    rows += [("Hamming loss", f"{metrics['hamming_loss']:.4f}"), ("mAP", f"{metrics['mAP']:.2f}"),
             ("Label-ranking AP", f"{metrics['lrap']:.2f}")]
    if "at_0.5" in metrics:
        a = metrics["at_0.5"]
        rows.append(("At a fixed 0.5 threshold: accuracy / micro-F1 / macro-F1",
                     f"{a['accuracy']:.2f} / {a['micro']['f1']:.2f} / {a['macro']['f1']:.2f}"))
    body = "".join(f"<tr><th>{k}</th><td class='num'>{v}</td></tr>" for k, v in rows)
    note = f"<p class='note'>{escape(metrics['zero_division'])}.</p>" if metrics.get("zero_division") else ""
    levels = ""
    if "hierarchy" in metrics:
        lines = format_levels(metrics["hierarchy"], metrics["size"])
        levels = "<ul id='levels'>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"
    return f"<table id='overall'>{body}</table>{levels}{note}"


def _tree(metrics: dict) -> str:
    """The label tree as nested lists: each node's name, F1 (number and bar), support and predicted count."""
    per_label = metrics["per_label"]
    tree = Hierarchy.from_labels([row["label"] for row in per_label], metrics["hierarchy"]["separator"])

    def node(i: int) -> str:
        r = per_label[i]
        kids = tree.children(i)
        inner = "<ul>" + "".join(node(j) for j in kids) + "</ul>" if kids else ""
        return (f"<li title='{escape(r['label'])}'><b>{escape(tree.name(i))}</b><span class='f1'>"
                f"<i style='width:{max(r['f1'], 0.0):.1f}%'></i></span>F1 {r['f1']:.1f} · support {r['support']} · "
                f"predicted {r['predicted']}{inner}</li>")

    roots = [i for i in range(len(per_label)) if tree.parents[i] < 0]
    return ("<p class='note'>Every node is a label of its own; its F1 counts the texts that have it, whatever "
            "they have below it.</p><ul class='tree' id='label-tree'>" + "".join(node(i) for i in roots) + "</ul>")


def _label_bars(per_label: list[dict]) -> str:
    rows = sorted(per_label, key=lambda r: (-r["f1"], -r["support"], r["label"]))
    out = ["<p class='legend'>sorted by F1 <span style='background:#4c78a8'></span>precision"
           "<span style='background:#f58518'></span>recall<span style='background:#54a24b'></span>F1</p>",
           "<table class='bars' id='per-label'><tr><th>label</th><th>support</th><th>predicted</th><th>P</th>"
           "<th>R</th><th>F1</th><th class='barcell'></th></tr>"]
    for r in rows:
        bars = "".join(f"<div class='bar {c}' style='width:{max(r[k], 0.0):.1f}%' title='{k} {r[k]:.2f}'></div>"
                       for c, k in (("p", "precision"), ("r", "recall"), ("f", "f1")))
        out.append(f"<tr><td>{escape(r['label'])}</td><td class='num'>{r['support']} ({r['support_pct']:.1f}%)</td>"
                   f"<td class='num'>{r['predicted']}</td><td class='num'>{r['precision']:.1f}</td>"
                   f"<td class='num'>{r['recall']:.1f}</td><td class='num'>{r['f1']:.1f}</td>"
                   f"<td class='barcell'>{bars}</td></tr>")
    return "".join(out) + "</table>"


def _swap_heatmap(labels: Sequence[str], matrix: np.ndarray, top: int = 10) -> str:
    rows = [i for i in range(len(labels)) if matrix[i].sum() > 0]
    if not rows:
        return "<p>No gold label was missed.</p>"
    cols = [j for j in range(len(labels)) if matrix[rows, j].sum() > 0]
    peak = max(1, int(matrix[np.ix_(rows, cols + [len(labels)])].max()))
    names = list(labels) + ["(nothing wrong predicted)"]
    head = "".join(f"<th class='col'>{escape(names[j])}</th>" for j in cols + [len(labels)])
    out = ["<p class='note'>Rows: a gold label the model missed. Columns: a label it predicted instead in the same "
           "example (not gold there). Cell = number of examples.</p>",
           f"<table class='heat' id='swaps'><tr><th class='row'>missed gold ↓ / predicted instead →</th>{head}</tr>"]
    for i in rows:
        cells = []
        for j in cols + [len(labels)]:
            v = int(matrix[i, j])
            alpha = 0.08 + 0.92 * v / peak if v else 0.0
            color = "#fff" if alpha > 0.55 else "#1f2328"
            cells.append(f"<td style='background:rgba(207,34,46,{alpha:.2f});color:{color}' "
                         f"title='{escape(labels[i])} → {escape(names[j])}: {v}'>{v or ''}</td>")
        out.append(f"<tr><th class='row'>{escape(labels[i])}</th>{''.join(cells)}</tr>")
    out.append("</table>")
    pairs = [(int(matrix[i, j]), labels[i], labels[j]) for i in rows for j in cols if matrix[i, j] > 0]
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    if pairs:
        out.append("<h3>Most frequent swaps</h3><table id='top-swaps'><tr><th>missed gold</th><th>predicted instead"
                   "</th><th>examples</th></tr>")
        out += [f"<tr><td>{escape(g)}</td><td>{escape(p)}</td><td class='num'>{n}</td></tr>" for n, g, p in pairs[:top]]
        out.append("</table>")
    return "".join(out)


def _pr_curves(y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, labels: Sequence[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figures = []
    for j in np.argsort(-y.sum(axis=0), kind="stable"):  # most frequent label first
        label, gold = labels[j], y[:, j].astype(bool)
        if not gold.any():
            continue
        precision, recall, _ = precision_recall_curve(gold, probs[:, j])
        chosen = probs[:, j] >= thresholds[j]
        tp = int((chosen & gold).sum())
        p_at = tp / chosen.sum() if chosen.any() else 0.0
        r_at = tp / gold.sum()
        fig, ax = plt.subplots(figsize=(2.6, 2.1))
        ax.step(recall, precision, where="post", color="#4c78a8", linewidth=1.4)
        ax.plot([r_at], [p_at], "o", color="#cf222e", markersize=6)
        ax.set_xlim(0, 1.02), ax.set_ylim(0, 1.05)
        ax.set_xlabel("recall", fontsize=8), ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7), ax.grid(alpha=0.3)
        ap = 100 * average_precision_score(gold, probs[:, j])
        figures.append(f"<figure><img alt='precision-recall curve of {escape(label)}' src='{_png(fig)}'>"
                       f"<figcaption><b>{escape(label)}</b>: AP {ap:.1f}; threshold {thresholds[j]:.2f} "
                       f"(red dot) → P {100 * p_at:.1f}, R {100 * r_at:.1f}, {int(gold.sum())} gold"
                       f"</figcaption></figure>")
    absent = [labels[j] for j in range(len(labels)) if not y[:, j].any()]
    note = (f"<p class='note'>No gold example in this split, so no curve: {escape(', '.join(absent))}.</p>"
            if absent else "")
    return f"<div class='grid' id='pr-curves'>{''.join(figures)}</div>{note}"


def _training_curves(history: list[dict]) -> str:
    """Loss and dev micro / macro-F1 per epoch, from the checkpoint's ``metrics.history``; the best epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6.5, 3))
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="#e45756", label="training loss")
    ax.set_xlabel("epoch"), ax.set_ylabel("training loss")
    f1 = ax.twinx()
    f1.plot(epochs, [h["dev_micro_f1"] for h in history], "s-", color="#4c78a8", label="dev micro-F1 (0.5)")
    f1.plot(epochs, [h["dev_macro_f1"] for h in history], "^-", color="#54a24b", label="dev macro-F1 (0.5)")
    best = max(history, key=lambda h: h["dev_macro_f1"])
    f1.axvline(best["epoch"], color="#999", linestyle=":", label=f"best: epoch {best['epoch']}")
    f1.set_ylabel("F1")
    handles = ax.get_legend_handles_labels()[0] + f1.get_legend_handles_labels()[0]
    f1.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    rows = "".join(f"<tr><td class='num'>{h['epoch']}</td><td class='num'>{h['loss']:.4f}</td>"
                   f"<td class='num'>{h['dev_micro_f1']:.2f}</td><td class='num'>{h['dev_macro_f1']:.2f}</td></tr>"
                   for h in history)
    return (f"<img alt='training curves' id='training-curves' src='{_png(fig)}'><table id='history'><tr><th>epoch"
            f"</th><th>loss</th><th>dev micro-F1</th><th>dev macro-F1</th></tr>{rows}</table><p class='note'>The "
            f"checkpoint is the best epoch by dev macro-F1 (epoch {best['epoch']}).</p>")


def _reliability(calibration: dict) -> str:
    """The reliability diagram (mean score vs observed frequency per bin, with the bins' sizes) and ECE per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in calibration["reliability"] if b["count"]]
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ":", color="#999", label="calibrated")
    ax.plot([b["confidence"] for b in bins], [b["frequency"] for b in bins], "o-", color="#4c78a8",
            label=f"this model (ECE {calibration['ece']:.2f}%)")
    ax.set_ylabel("share that has the label"), ax.legend(fontsize=8, loc="upper left"), ax.grid(alpha=0.3)
    counts.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["count"] for b in bins], width=0.09, color="#bbb")
    counts.set_yscale("log"), counts.set_xlabel("predicted probability"), counts.set_ylabel("scores")
    rows = "".join(f"<tr><td>{escape(label)}</td><td class='num'>{value:.2f}</td></tr>" for label, value in
                   sorted(calibration["per_label"].items(), key=lambda kv: -kv[1]))
    how = ("temperature-scaled per label on dev (labelwise.json \"calibration\")" if calibration["calibrated"]
           else "raw (not calibrated)")
    return (f"<img alt='reliability diagram' id='reliability' src='{_png(fig)}'><p class='note'>Expected calibration "
            f"error {calibration['ece']:.2f}% over every text × label score; the scores are {how}. A point under "
            "the diagonal: the model is more confident than it is right.</p><table id='ece'><tr><th>label</th>"
            f"<th>ECE %</th></tr>{rows}</table>")


def _count_histogram(y: np.ndarray, pred: np.ndarray) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gold_n, pred_n = y.sum(axis=1).astype(int), pred.sum(axis=1).astype(int)
    top = int(max(gold_n.max(initial=0), pred_n.max(initial=0)))
    ks = np.arange(top + 1)
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    ax.bar(ks - 0.2, np.bincount(gold_n, minlength=top + 1), width=0.4, label="gold", color="#54a24b")
    ax.bar(ks + 0.2, np.bincount(pred_n, minlength=top + 1), width=0.4, label="predicted", color="#4c78a8")
    ax.set_xticks(ks), ax.set_xlabel("labels per example"), ax.set_ylabel("examples"), ax.legend()
    ax.grid(axis="y", alpha=0.3)
    table = "".join(f"<tr><td class='num'>{k}</td><td class='num'>{int((gold_n == k).sum())}</td>"
                    f"<td class='num'>{int((pred_n == k).sum())}</td></tr>" for k in ks)
    return (f"<img alt='labels per example, predicted vs gold' src='{_png(fig)}'>"
            f"<table id='label-counts'><tr><th>labels</th><th>gold</th><th>predicted</th></tr>{table}</table>"
            f"<p class='note'>Mean labels per example: gold {gold_n.mean():.2f}, predicted {pred_n.mean():.2f}.</p>")


def _bad_cases(evaluation, pred: np.ndarray, limit: int) -> str:
    labels, probs = evaluation.labels, evaluation.probs
    bad = [i for i, e in enumerate(evaluation.examples)
           if {labels[j] for j in np.flatnonzero(pred[i])} != set(e.labels)]
    if not bad:
        return "<p>No bad case: every example got exactly its gold labels.</p>"
    out = [f"<p class='note'>{len(bad)} of {len(evaluation.examples)} examples have at least one wrong label"
           + (f"; the first {limit} are shown (all of them: <code>bad_case.txt</code>)" if len(bad) > limit else "")
           + ". <span class='ok'>correct</span>, <span class='miss'>missed gold</span>, "
             "<span class='wrong'>wrongly predicted</span>; numbers are probabilities.</p>",
           "<table class='cases' id='bad-cases'><tr><th>#</th><th>text</th><th>gold</th><th>predicted</th></tr>"]
    for i in bad[:limit]:
        gold = set(evaluation.examples[i].labels)
        predicted = [labels[j] for j in np.argsort(-probs[i]) if pred[i, j]]
        gold_cells = " ".join(
            f"<span class='{'ok' if labels.index(g) in np.flatnonzero(pred[i]) else 'miss'}'>{escape(g)} "
            f"{probs[i, labels.index(g)]:.2f}</span>" for g in evaluation.examples[i].labels)
        pred_cells = " ".join(f"<span class='{'ok' if p in gold else 'wrong'}'>{escape(p)} "
                              f"{probs[i, labels.index(p)]:.2f}</span>" for p in predicted)
        line = evaluation.examples[i].line
        out.append(f"<tr><td class='num'>{line if line is not None else i + 1}</td>"
                   f"<td class='text'>{escape(evaluation.examples[i].text)}</td><td>{gold_cells or '—'}</td>"
                   f"<td>{pred_cells or '—'}</td></tr>")
    return "".join(out) + "</table>"


# ---- the page --------------------------------------------------------------------------------------------
def build_report(evaluation, classifier=None, max_bad_cases: int = 300, title: str | None = None) -> str:
    """The report as one HTML string (see the module docstring)."""
    labels, metrics = list(evaluation.labels), evaluation.metrics
    y = multi_hot(evaluation.examples, labels)
    thresholds = np.broadcast_to(np.asarray(evaluation.thresholds, dtype=np.float32), (len(labels),))
    pred = evaluation.decisions()  # the labels `labelwise predict` and bad_case.txt give
    title = title or f"labelwise evaluation: {evaluation.split} split"
    meta = [f"{metrics['size']} examples, {len(labels)} labels",
            f"written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}"]
    if classifier is not None:
        meta.insert(0, f"model: {escape(classifier.meta.base_model)}, max_seq_length {classifier.max_seq_length}, "
                       f"{classifier.backend.name} backend")
    sections = [
        ("overall", "Overall", _overall(metrics)),
        *([("tree", "The label tree: F1 and support per node", _tree(metrics))] if "hierarchy" in metrics else []),
        ("labels", "Per label: precision, recall, F1 and support", _label_bars(metrics["per_label"])),
        ("confusion", "Which labels get swapped", _swap_heatmap(labels, swap_matrix(y, pred))),
        ("pr", "Precision-recall curve per label", _pr_curves(y, evaluation.probs, thresholds, labels)),
        ("counts", "Labels per example: predicted vs gold", _count_histogram(y, pred)),
        *([("calibration", "Calibration: do the probabilities mean what they say?", _reliability(
            metrics["calibration"]))] if metrics.get("calibration") else []),
        ("bad", "Bad cases", _bad_cases(evaluation, pred, max_bad_cases)),
    ]
    history = (classifier.meta.metrics or {}).get("history") if classifier is not None else None
    if isinstance(history, list) and history and all(isinstance(h, dict) and {"epoch", "loss", "dev_micro_f1",
                                                                             "dev_macro_f1"} <= set(h) for h in history):
        sections.append(("training", "Training curves", _training_curves(history)))
    if classifier is not None:  # what the training defaults chose (encoder and why, windows, thresholds)
        chosen = describe_choices(classifier.meta) + [
            "Thresholds: per label, tuned on dev." if classifier.meta.thresholds is not None else "Thresholds: 0.5."]
        sections.insert(0, ("choices", "What the defaults chose",
                            "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in chosen) + "</ul>"))
    nav = " · ".join(f"<a href='#{key}'>{name}</a>" for key, name, _ in sections)
    body = "".join(f"<section id='{key}'><h2>{name}</h2>{content}</section>" for key, name, content in sections)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
            f"<body><h1>{escape(title)}</h1><p class='meta'>{' · '.join(meta)}</p><p>{nav}</p>{body}</body></html>\n")


def write_report(evaluation, path: str | os.PathLike, classifier=None, max_bad_cases: int = 300,
                 title: str | None = None) -> Path:
    """Write the HTML report of ``evaluation`` (a :class:`labelwise.evaluation.Evaluation`) to ``path``.

    ``path`` is replaced if it exists, but never when it is one of the files the evaluation read.
    """
    check_outputs([path], getattr(evaluation, "sources", ()), overwrite=True)
    return atomic_write_text(path, build_report(evaluation, classifier, max_bad_cases, title))
