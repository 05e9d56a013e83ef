"""`labelwise` command line: the parser assembled from the verb groups, ``main()`` and its one-line errors.

Each group registers its verbs and holds their thin ``cmd_*`` functions: :mod:`labelwise.cli.train` (train,
zeroshot, index), :mod:`labelwise.cli.demo` (demo), :mod:`labelwise.cli.predict` (predict, evaluate), :mod:`labelwise.cli.compress` (export,
prune), :mod:`labelwise.cli.serve` (serve), :mod:`labelwise.cli.annotate` (doccano, labelstudio),
:mod:`labelwise.cli.analysis` (data tools, interpret), :mod:`labelwise.cli.select` (select). Flags come from config fields (:mod:`labelwise.settings`); those several commands share are in
:mod:`labelwise.cli.options`.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys

from labelwise.cli import analysis, annotate, compress, demo, predict, select, serve, train
from labelwise.cli.config_file import add_config_flags, apply_config, print_config
from labelwise.cli.options import GlobalOptions, HubDataset
from labelwise.errors import LabelwiseError, OutputExistsError, os_error_line
from labelwise.settings import add_flags, check_args

log = logging.getLogger("labelwise")

GROUPS = (train, demo, predict, compress, serve, annotate, analysis, select)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelwise", description="Multi-label text classification.")
    add_flags(parser, GlobalOptions)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    _each_command(parser, add_config_flags)  # --config FILE, --print_config
    _each_command(parser, add_hf_dataset_flags)  # --hf_dataset NAME beside every --dataset_dir
    return parser


def add_hf_dataset_flags(parser: argparse.ArgumentParser) -> None:
    """``--hf_dataset`` / ``--hf_config`` on a command that reads ``--dataset_dir``, which it then stands in for."""
    folder = next((a for a in parser._actions if a.dest == "dataset_dir"), None)
    if folder is None:
        return
    parser.set_defaults(_dataset_dir_required=folder.required)
    folder.required = False  # checked in resolve_hf_dataset: one of the two
    add_flags(parser, HubDataset)


def resolve_hf_dataset(args: argparse.Namespace) -> None:
    """Put the saved folder of ``--hf_dataset`` in ``args.dataset_dir``; refuse both or neither where one is needed."""
    name = getattr(args, "hf_dataset", None)
    if name and args.dataset_dir:
        raise LabelwiseError(f"--dataset_dir {args.dataset_dir} and --hf_dataset {name} both given; give one")
    if name:
        from labelwise.data.hf import hf_dataset_folder

        args.dataset_dir = str(hf_dataset_folder(name, args.hf_config))
    elif getattr(args, "_dataset_dir_required", False) and not args.dataset_dir:
        raise LabelwiseError("give --dataset_dir DIR (a dataset folder) or --hf_dataset NAME (a Hugging Face dataset)")


def _each_command(parser: argparse.ArgumentParser, do) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if sub.get_default("func") is not None:
                    do(sub)
                _each_command(sub, do)


def _command_options(parser: argparse.ArgumentParser, func) -> set[str]:
    """Option strings of the (sub)subcommand whose ``func`` default is ``func``; empty when none is found."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if sub.get_default("func") is func:
                    return {o for a in sub._actions for o in a.option_strings}
                found = _command_options(sub, func)
                if found:
                    return found
    return set()


def flag_message(message: str, options: set[str]) -> str:
    """Library messages name parameters as `name`; say ``--name`` where the command has that flag."""
    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`",
                  lambda m: f"--{m.group(1)}" if f"--{m.group(1)}" in options else m.group(1), message)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        apply_config(parser, argv)  # the file's values become the defaults; flags still win
    except LabelwiseError as err:
        print(f"labelwise: error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if getattr(args, "print_config", False):
        print_config(parser, argv, args)
        return 0
    logging.basicConfig(format="%(message)s", level=logging.WARNING if args.quiet else logging.INFO)
    try:
        check_args(args)  # every flag against its config field's constraints, before any work
        resolve_hf_dataset(args)
        return args.func(args)
    except LabelwiseError as err:
        # the library names no flag; where the command has one, say which
        hint = " (--overwrite)" if isinstance(err, OutputExistsError) and "overwrite" in args else ""
        message = flag_message(str(err), _command_options(parser, getattr(args, "func", None)))
        print(f"labelwise: error: {message}{hint}", file=sys.stderr)
        return 2
    except OSError as err:  # a disk or permission problem the library did not foresee: still one line
        print(f"labelwise: error: {os_error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labelwise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
