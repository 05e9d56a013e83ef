"""CLI for active learning: ``select`` (the next texts to annotate, with the model's guesses as pre-annotations).

What comes back from the annotation tool is merged by the imports (``labelwise doccano`` / ``labelwise
labelstudio --merge_into DATASET``, :mod:`labelwise.cli.annotate`, with its ``merge_annotations``).
"""
from __future__ import annotations

from labelwise.select.run import SelectConfig
from labelwise.settings import add_flags, from_args

TOOL = {"doccano": ("doccano", "doccano_file", "export.jsonl"),
        "labelstudio": ("Label Studio", "labelstudio_file", "export.json")}


def register(sub) -> None:
    p = sub.add_parser("select", help="the next texts to annotate, from a pool, with the model's guesses "
                                      "(doccano or Label Studio tasks)")
    add_flags(p, SelectConfig)
    p.set_defaults(func=cmd_select)


def next_command(cfg: SelectConfig) -> str:
    """What to run once the tasks come back annotated."""
    _, flag, export = TOOL[cfg.format]
    if cfg.dataset_dir:
        return f"labelwise {cfg.format} --{flag} {export} --merge_into {cfg.dataset_dir}"
    return f"labelwise {cfg.format} --{flag} {export} --save_dir data --splits 0.8 0.2   # a first dataset"


def cmd_select(args) -> int:
    from labelwise.select.run import run_select

    cfg = from_args(SelectConfig, args, progress=not args.quiet)
    selection, path = run_select(cfg)
    tool = TOOL[cfg.format][0]
    guesses = "with the model's guesses pre-filled" if selection.probabilities is not None else "without labels"
    print(selection.summary())
    print(f"{len(selection.texts)} {tool} tasks, {guesses} -> {path}")
    print(f"next: import {path} into {tool}, annotate, export, then run\n  {next_command(cfg)}")
    return 0
