"""CLI for looking into data and models: ``data {sparse,augment,dirty}``, ``interpret {words,examples}``.

Each command only parses flags and calls the API (``labelwise.analysis.*``); the analysis modules themselves
hold no argparse code.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from labelwise.analysis.augment import AUG_STRATEGIES
from labelwise.analysis.dirty import METHODS as DIRTY_METHODS
from labelwise.analysis.interpret_words import METHODS as WORDS_METHODS
from labelwise.analysis.sparse import SparseConfig
from labelwise.cli.options import DatasetFiles, InterpretFiles, ModelSource, RunOptions
from labelwise.data.tables import TableColumns, columns_of
from labelwise.errors import LabelwiseError
from labelwise.settings import add_flags, from_args, setting


@dataclass
class AugmentFiles:
    train_path: str = setting(help="text<TAB>labels file (or a table) to augment")
    aug_path: str | None = setting(None, help="output file (default: aug.txt beside --train_path)")
    aug_strategy: str = setting("substitute", choices=AUG_STRATEGIES,
                                help="how each text is rewritten; mix: a random one each time")
    with_original: bool = setting(False, help="write the original examples first")


@dataclass
class ExamplesOptions:
    top_k: int = setting(3, help="supporting examples per text", minimum=1)


@dataclass
class DirtyOptions:
    method: str = setting("representer", choices=DIRTY_METHODS, help="how examples are scored")
    dirty_num: int = setting(100, help="how many examples to flag", minimum=1)
    dirty_threshold: float = setting(0.0, help="flag only examples scoring above this; with --representer_score "
                                     "paddlenlp: the representer weight that counts as positive")
    dirty_file: str = setting("train_dirty.txt", help="flagged examples; a bare name goes into --dataset_dir")
    rest_file: str = setting("train_dirty_rest.txt", help="the other examples; a bare name goes into --dataset_dir")
    doccano_file: str | None = setting(None, help="also write the flagged examples as doccano JSONL")
    representer_score: str = setting("self", choices=("self", "paddlenlp"),
                                     help="representer: score with this method's own rule or PaddleNLP's")
    lmbd: float = setting(1e-3, help="L2 strength of the refit head", minimum=0)
    folds: int = setting(5, help="confident: K folds", minimum=2)
    cl_model: str = setting("head", choices=("head", "finetune"),
                            help="confident: out-of-fold model; head = logistic head on frozen features (fast), "
                                 "finetune = K fine-tuned models like the checkpoint (slow)")
    cl_epochs: int | None = setting(None, help="finetune: epochs per fold (default: the checkpoint's)", minimum=1)


@dataclass
class WordsOptions:
    top_words_file: str | None = setting(None, help="TSV of top words (default: beside the HTML, .tsv)")
    method: str = setting("ig", choices=WORDS_METHODS, help="attribution method")
    top_words: int = setting(5, help="words shown per label", minimum=1)
    n_steps: int = setting(20, help="integrated-gradients steps", minimum=1)
    n_samples: int | None = setting(None, help="LIME perturbations (200) / SHAP samples (20)", minimum=2)
    max_examples: int = setting(100, help="interpret the first N texts", minimum=1)


def register(sub) -> None:
    data = sub.add_parser("data", help="data tools: sparse, augment, dirty").add_subparsers(
        dest="data_command", required=True, metavar="TOOL")
    p = data.add_parser("sparse", help="dev examples with little training support, and data to add for them")
    add_flags(p, SparseConfig)
    p.set_defaults(func=cmd_sparse)

    p = data.add_parser("augment", help="word-level augmentation of a training file (labels copied)")
    add_flags(p, AugmentFiles)
    # the word-level settings are SparseConfig's: `data sparse` rewrites its support examples the same way
    add_flags(p, SparseConfig, only=("aug_type", "create_n", "aug_percent", "mlm_model"), defaults={"create_n": 2})
    add_flags(p, RunOptions, only=("seed", "overwrite"))
    add_flags(p, ModelSource, only=("device",), help_overrides={"device": "for --aug_type mlm"})
    add_flags(p, TableColumns)
    p.set_defaults(func=cmd_augment)

    interpret = sub.add_parser("interpret", help="why did the model predict that: words, examples").add_subparsers(
        dest="interpret_command", required=True, metavar="KIND")
    p = interpret.add_parser("examples", help="training examples that support each prediction (feature similarity)")
    add_flags(p, DatasetFiles, only=("dataset_dir", "train_file", "label_file"), required=("dataset_dir",))
    add_flags(p, ModelSource, only=("params_path", "device", "batch_size", "max_seq_length"))
    add_flags(p, InterpretFiles, help_overrides={"interpret_result_file": "output; - for stdout"})
    add_flags(p, ExamplesOptions)
    add_flags(p, RunOptions, only=("format",))
    p.set_defaults(func=cmd_interpret_examples)

    p = data.add_parser("dirty", help="find mislabelled training examples to re-annotate")
    add_dirty_arguments(p)
    p.set_defaults(func=cmd_dirty)

    p = interpret.add_parser("words", help="which words made the model predict a label")
    add_interpret_words_arguments(p)
    p.set_defaults(func=cmd_interpret_words)


def add_dirty_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, DatasetFiles, only=("dataset_dir", "train_file"), required=("dataset_dir",),
              help_overrides={"dataset_dir": "folder with train.txt and label.txt (or a table split)"})
    add_flags(p, TableColumns)
    add_flags(p, ModelSource, only=("params_path", "batch_size", "max_seq_length", "device"),
              help_overrides={"params_path": "checkpoint trained on that train.txt"})
    add_flags(p, DirtyOptions)
    add_flags(p, RunOptions, only=("seed",))


def add_interpret_words_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, ModelSource, only=("params_path", "max_seq_length", "device"),
              help_overrides={"params_path": "checkpoint folder (PyTorch)"})
    add_flags(p, DatasetFiles, only=("dataset_dir",), help_overrides={
        "dataset_dir": "optional: its label.txt must match the model; bad_case.txt is looked for there too"})
    add_flags(p, InterpretFiles, defaults={"interpret_result_file": "interpret_words.html"},
              help_overrides={"text": "interpret this text instead (repeatable)",
                              "interpret_result_file": "the HTML heatmap"})
    add_flags(p, WordsOptions)


def cmd_sparse(args) -> int:
    from labelwise.analysis.sparse import run_sparse

    print(run_sparse(from_args(SparseConfig, args, progress=not args.quiet)).summary())
    return 0


def cmd_augment(args) -> int:
    from labelwise.analysis.augment import WordAugmenter, augment_file

    aug_path = args.aug_path or str(Path(args.train_path).parent / "aug.txt")
    augmenter = WordAugmenter(args.aug_strategy, args.aug_type, args.create_n, args.aug_percent, args.seed,
                              args.mlm_model, args.device)
    report = augment_file(args.train_path, aug_path, augmenter, args.with_original, args.overwrite,
                          progress=not args.quiet, columns=columns_of(args))
    print(report.summary())
    return 0


def _checkpoint(args, labels=None, label_file=None):
    """The PyTorch checkpoint ``--params_path``; given a dataset's ``labels``, checked against them."""
    from labelwise.data.dataset import check_same_labels
    from labelwise.predict.classifier import Classifier

    clf = Classifier.load(args.params_path, device=args.device, require=("gradients",))
    if labels is not None:
        check_same_labels(clf.labels, labels, args.params_path, label_file)
    return clf


def cmd_interpret_examples(args) -> int:
    from labelwise.analysis.similarity import (
        format_interpretation,
        interpret_examples,
        read_interpret_input,
    )
    from labelwise.data.dataset import load_dataset
    from labelwise.files import atomic_write_text, check_outputs

    ds = load_dataset(args.dataset_dir, train_file=args.train_file, label_file=args.label_file, require=("train",))
    inputs = [Path(args.dataset_dir) / args.train_file, Path(args.dataset_dir) / args.label_file]
    if args.interpret_result_file != "-":
        check_outputs([args.interpret_result_file], inputs + ([] if args.text else [args.interpret_input_file]),
                      overwrite=True)
    clf = _checkpoint(args, ds.labels, inputs[1])
    if args.text:
        items = [(text, None) for text in args.text]
    else:
        items = read_interpret_input(args.interpret_input_file, clf.labels)
    results = interpret_examples(clf, ds.train, [t for t, _ in items], [g for _, g in items], args.top_k,
                                 args.batch_size, args.max_seq_length, progress=not args.quiet)
    if args.format == "json":
        body = json.dumps([r.to_json() for r in results], ensure_ascii=False, indent=2) + "\n"
    else:
        body = format_interpretation(results)
    if args.interpret_result_file == "-":
        sys.stdout.write(body)
    else:
        atomic_write_text(args.interpret_result_file, body)
        print(f"{len(results)} texts interpreted, top {args.top_k} supporting training examples each, "
              f"written to {args.interpret_result_file}")
    return 0


def _dataset_output(dataset_dir: str, name: str) -> Path:
    """A bare file name goes into the dataset folder (PaddleNLP's way); a path (even ./name) is used as given."""
    bare = "/" not in str(name) and os.sep not in str(name)
    return Path(dataset_dir) / name if bare else Path(name)


def cmd_dirty(args) -> int:
    from labelwise.analysis.dirty import find_dirty, select_dirty, write_dirty
    from labelwise.data.dataset import load_dataset
    from labelwise.files import check_outputs

    ds = load_dataset(args.dataset_dir, train_file=args.train_file, require=("train",), columns=columns_of(args))
    dirty_path, rest_path = (_dataset_output(args.dataset_dir, name) for name in (args.dirty_file, args.rest_file))
    label_file = Path(args.dataset_dir) / "label.txt"
    check_outputs([dirty_path, rest_path], [Path(args.dataset_dir) / args.train_file, label_file], overwrite=True)
    clf = _checkpoint(args, ds.labels, label_file)
    ranking = find_dirty(clf, ds.train, args.method, lmbd=args.lmbd, representer_score=args.representer_score,
                         dirty_threshold=args.dirty_threshold, folds=args.folds, cl_model=args.cl_model,
                         cl_epochs=args.cl_epochs, dataset_dir=args.dataset_dir, batch_size=args.batch_size,
                         max_seq_length=args.max_seq_length, seed=args.seed,
                         progress=not getattr(args, "quiet", False))
    dirty = select_dirty(ranking, args.dirty_num, args.dirty_threshold)
    write_dirty(ds.train, dirty, dirty_path, rest_path, args.doccano_file, ranking)
    print(f"{args.method}: {len(dirty)} of {len(ds.train)} training examples flagged -> {dirty_path}; "
          f"the other {len(ds.train) - len(dirty)} -> {rest_path}")
    if "cleanlab_issues" in ranking.detail:
        print(f"cleanlab's own estimate: {int(ranking.detail['cleanlab_issues'].sum())} examples with a label issue")
    for rank, i in enumerate(dirty[:5], start=1):
        example = ds.train[i]
        print(f"  {rank}. score {ranking.scores[i]:.4g}  gold [{','.join(example.labels)}]  model "
              f"[{','.join(ranking.suggested[i])}]  {example.text[:60]}")
    if args.doccano_file:
        print(f"doccano JSONL for relabelling -> {args.doccano_file}")
    return 0


def _interpret_input_path(args) -> Path:
    from labelwise.errors import DataError

    path = Path(args.interpret_input_file)
    if not path.exists() and args.dataset_dir and not path.is_absolute():
        candidate = Path(args.dataset_dir) / path
        if candidate.exists():
            return candidate
    if not path.exists():
        raise DataError(path, None, "file not found", "run `labelwise evaluate` first (it writes bad_case.txt) "
                        "or pass --interpret_input_file / --text")
    return path


def cmd_interpret_words(args) -> int:
    from labelwise.analysis.interpret_words import (
        KIND_NOTE,
        InterpretInput,
        interpret,
        read_interpret_input,
        write_html,
        write_tsv,
    )
    from labelwise.data.dataset import read_labels
    from labelwise.files import check_outputs

    label_file = Path(args.dataset_dir) / "label.txt" if args.dataset_dir else None
    clf = _checkpoint(args, read_labels(label_file) if label_file else None, label_file)
    input_path = None
    if args.text:
        inputs = [InterpretInput(t) for t in args.text if t.strip()]
        if not inputs:
            raise LabelwiseError("--text is empty")
    else:
        input_path = _interpret_input_path(args)
        inputs = read_interpret_input(input_path, clf.labels)
    html_path = Path(args.interpret_result_file)
    tsv_path = Path(args.top_words_file) if args.top_words_file else html_path.with_suffix(".tsv")
    check_outputs([html_path, tsv_path], [input_path, label_file], overwrite=True)
    total = len(inputs)
    inputs = inputs[:args.max_examples]
    results = interpret(clf, inputs, args.method, args.n_steps, args.n_samples, args.max_seq_length,
                        progress=not getattr(args, "quiet", False))
    write_html(results, html_path, args.top_words, args.method)
    write_tsv(results, tsv_path, args.top_words)
    note = f" (the first {len(inputs)} of {total}; --max_examples)" if total > len(inputs) else ""
    print(f"{len(results)} label explanations for {len(inputs)} texts{note} -> {html_path}, top words -> {tsv_path}")
    for r in results[:3]:
        print(f"  {r.label} ({KIND_NOTE[r.kind]}): {' '.join(w for w, _ in r.top_words(args.top_words))}")
    return 0
