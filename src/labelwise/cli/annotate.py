"""CLI for annotations: ``doccano`` and ``labelstudio`` exports → a dataset folder, or merged into one.

Each command only parses flags and calls :mod:`labelwise.data.annotation` / :mod:`labelwise.select.tasks`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from labelwise.cli.options import DatasetFiles, LabelPaths, RunOptions
from labelwise.errors import LabelwiseError
from labelwise.settings import add_flags, setting, yes_no


@dataclass
class SplitOptions:
    """Where the annotated examples go: a new dataset folder split three ways, one file, or an existing dataset."""

    save_dir: str = setting("./data", help="dataset folder to write")
    splits: list = setting(default_factory=lambda: [0.8, 0.2], type=float, nargs="+",
                           help="train [dev [test]] ratios summing to 1")
    is_shuffle: bool = setting(True, type=yes_no, nargs="?", const=True,
                               help="shuffle before splitting (default true; --is_shuffle false keeps file order)")
    stratify: bool | None = setting(None, type=yes_no, nargs="?", const=True,
                                    help="iterative stratification: every label reaches every split in proportion "
                                         "(default: on when shuffling; --stratify false: the plain random split)")
    output_file: str | None = setting(None, help="instead of a dataset folder, write every example to this one file "
                                                 "(re-annotated dirty or support data)")
    merge_into: str | None = setting(
        None, metavar="DATASET_DIR",
        help="instead of a new dataset: append the annotated texts that are new to this dataset folder's train.txt "
             "(labels checked against its label.txt, read with --hierarchy_sep; texts already in train, dev or test "
             "skipped; dev and test untouched; the split flags do not apply)")


@dataclass
class DoccanoFile:
    doccano_file: str = setting("doccano.jsonl", help="doccano text-classification export")


@dataclass
class LabelStudioFile:
    labelstudio_file: str = setting("label_studio.json", help="Label Studio JSON or JSON-MIN export")
    text_key: str = setting("text", help="field of the task data holding the text")
    from_name: str | None = setting(None, help="the choices/taxonomy control to read (when several)")


def _split_flags(p: argparse.ArgumentParser) -> None:
    add_flags(p, SplitOptions)
    add_flags(p, DatasetFiles, only=("label_file",), defaults={"label_file": None},
              help_overrides={"label_file": "with --output_file: labels must be in this label.txt"})
    add_flags(p, RunOptions, only=("seed", "overwrite"), help_overrides={"seed": "shuffle seed"})
    add_flags(p, LabelPaths, only=("hierarchy_sep",), help_overrides={
        "hierarchy_sep": "separator of label paths in the annotations, and what joins a Label Studio taxonomy path "
                         "(体育##足球: a tree; each path brings its parents), and with --merge_into of the "
                         "dataset's label names; none: flat names (a taxonomy path: its last element)"})


def register(sub) -> None:
    p = sub.add_parser("doccano", help="doccano JSONL export → dataset folder")
    add_flags(p, DoccanoFile)
    _split_flags(p)
    p.set_defaults(func=cmd_doccano)

    p = sub.add_parser("labelstudio", help="Label Studio JSON export (choices / taxonomy) → dataset folder")
    add_flags(p, LabelStudioFile)
    _split_flags(p)
    p.set_defaults(func=cmd_labelstudio)


# ---- commands ----------------------------------------------------------------------------------
def _write_annotated(examples, args, source: str, skipped: int = 0) -> int:
    from labelwise.data.annotation import write_dataset, write_labelled

    if args.merge_into:
        return merge_annotations(examples, args, source)
    if args.output_file:
        path = write_labelled(examples, args.output_file, args.label_file, args.overwrite, source)
        print(f"{len(examples)} examples written to {path}")
        return 0
    if args.label_file:
        raise LabelwiseError("--label_file only checks labels with --output_file")
    report = write_dataset(examples, args.save_dir, args.splits, args.is_shuffle, args.seed, args.stratify,
                           args.overwrite, source, skipped, sep=args.hierarchy_sep)
    print(report.summary())
    return 0


def cmd_doccano(args) -> int:
    from labelwise.data.annotation import read_doccano

    return _write_annotated(read_doccano(args.doccano_file, args.hierarchy_sep), args, args.doccano_file)


def cmd_labelstudio(args) -> int:
    from labelwise.data.annotation import read_label_studio

    examples, skipped = read_label_studio(args.labelstudio_file, args.text_key, args.from_name, args.hierarchy_sep)
    return _write_annotated(examples, args, args.labelstudio_file, skipped)


def merge_annotations(examples, args, source: str) -> int:
    """``--merge_into``: the annotated ``examples`` appended to that dataset's train.txt (dev and test untouched)."""
    from labelwise.select.tasks import merge_into_train

    for flag in ("output_file", "label_file"):
        if getattr(args, flag, None):
            raise LabelwiseError(f"--{flag} and --merge_into do not go together: --merge_into appends to the "
                                 "dataset's train.txt and checks labels against its label.txt")
    report = merge_into_train(examples, args.merge_into, source, hierarchy_sep=args.hierarchy_sep)
    print(report.summary())
    return 0
