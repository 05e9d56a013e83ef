"""``--config run.yaml`` and ``--print_config`` on every command: a run written down as a file, and replayed.

The file's keys are the command's flags without the dashes (the config fields they come from,
:mod:`labelwise.settings`), so ``labelwise train ... --print_config > run.yaml`` writes every setting of that run and
``labelwise train --config run.yaml`` runs it again; flags given beside ``--config`` override the file. The values
go through the same validation as flags (each command's config ``validate()``). An unknown key is one line naming
the file, the key and the closest valid one.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path

from labelwise.errors import LabelwiseError
from labelwise.settings import add_flags, setting

__all__ = ["add_config_flags", "apply_config", "print_config"]

SKIP = {"help", "config", "print_config", "quiet"}


@dataclass
class ConfigFile:
    """``--config`` and ``--print_config``, on every command."""

    config: str | None = setting(None, metavar="FILE", help="read the settings from this YAML file (keys: the flags "
                                 "without --); flags given beside it win")
    print_config: bool = setting(False, help="print this command's settings as YAML (for --config) and stop")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, ConfigFile)


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)subcommand parser that ``argv`` names (``data sparse`` → sparse's)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for token in argv:
                if token in action.choices:
                    rest = argv[argv.index(token) + 1:]
                    return _command_parser(action.choices[token], rest)
    return parser


def _settings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in SKIP
            and not isinstance(a, argparse._SubParsersAction)}


def apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Make the values of ``--config FILE`` in ``argv`` the defaults of the command it names (before parsing)."""
    pre = argparse.ArgumentParser(add_help=False)
    add_flags(pre, ConfigFile, only=("config",))
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return
    import yaml

    path = Path(known.config)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise LabelwiseError(f"{path}: cannot read it ({err.strerror or err}); check `config`") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        raise LabelwiseError(f"{path}{line}: not YAML ({getattr(err, 'problem', None) or err}); write one "
                             "`flag_name: value` a line") from None
    if values is None:
        return
    if not isinstance(values, dict):
        raise LabelwiseError(f"{path}: holds a YAML {type(values).__name__}, not `flag_name: value` lines")
    command = _command_parser(parser, argv)
    settings = _settings(command)
    for key, value in values.items():
        if key not in settings:
            close = difflib.get_close_matches(str(key), list(settings), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the keys are the flags of {command.prog}"
            raise LabelwiseError(f"{path}: unknown key {key!r}{hint}")
        settings[key].required = False  # given by the file
    command.set_defaults(**values)


def print_config(parser: argparse.ArgumentParser, argv: list[str], args: argparse.Namespace) -> None:
    """This run's settings as YAML, in the command's flag order, on stdout."""
    import yaml

    command = _command_parser(parser, argv)
    values = {dest: getattr(args, dest) for dest in _settings(command) if hasattr(args, dest)}
    values = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
    sys.stdout.write(yaml.safe_dump(values, allow_unicode=True, sort_keys=False, default_flow_style=False))
