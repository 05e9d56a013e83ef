"""Settings: a config dataclass is the one place a setting's name, type, default and help live.

A field declared with :func:`setting` carries its help (and, where the flag differs from the field, its flag)
in the field's metadata; :func:`add_flags` turns the fields of a config class into argparse flags and
:func:`from_args` builds the config back from the parsed flags, so ``--help`` cannot drift from the API::

    @dataclass
    class ServeConfig:
        max_texts: int = setting(64, help="texts per request", minimum=1)

        def validate(self) -> "ServeConfig":
            check_fields(self)        # minimum / maximum / choices from the metadata
            ...                       # cross-field rules
            return self

Every config has ``validate()``, which raises :class:`~labelwise.errors.LabelwiseError` naming the field as
`name` (the CLI shows it as ``--name``) and returns the config.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from typing import Any, Iterable, Sequence

from labelwise.errors import LabelwiseError

__all__ = ["setting", "same_setting", "add_flags", "from_args", "check_fields", "check_args", "yes_no"]

_TYPES = {"int": int, "float": float, "str": str}


def setting(default: Any = dataclasses.MISSING, *, help: str, flags: Sequence[str] | None = None,
            choices: Sequence | None = None, minimum: float | None = None, maximum: float | None = None,
            action: str | None = None, nargs: str | int | None = None, metavar: str | None = None,
            cli: bool = True, default_factory: Any = dataclasses.MISSING, type: Any = None,
            const: Any = None) -> Any:
    """A dataclass field with what its command-line flag needs.

    ``flags``: option strings when not ``--<field name>`` (aliases, or ``--no_x`` for a switch that turns
    a default-True field off); ``action``: argparse's (``store_true``, ``store_false``, ``bool`` for
    ``--x/--no-x``); ``cli=False``: an API-only field (no flag); ``minimum`` / ``maximum`` / ``choices``:
    checked by :func:`check_fields`; ``type`` (a callable) and ``const`` (with ``nargs="?"``): argparse's.
    """
    metadata = {"help": help, "flags": tuple(flags) if flags else None, "choices": tuple(choices) if choices else None,
                "minimum": minimum, "maximum": maximum, "action": action, "nargs": nargs, "metavar": metavar,
                "cli": cli, "type": type, "const": const}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def same_setting(config_cls, name: str, **changes) -> Any:
    """The :func:`setting` of field ``name`` of ``config_cls`` (its default, help and flag), for another config that
    holds the same setting, so that it is written once; ``changes`` override its keywords (say ``help=``)."""
    field = {f.name: f for f in dataclasses.fields(config_cls)}[name]
    options = dict(field.metadata)  # its keys are setting()'s keywords
    if field.default_factory is not dataclasses.MISSING:
        options["default_factory"] = field.default_factory
    else:
        options["default"] = field.default
    options.update(changes)
    return setting(**options)


def yes_no(value: str) -> bool:
    """A flag's true / false word (``--is_shuffle false``); argparse's ``type`` for such a :func:`setting`."""
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _base_type(annotation: Any):
    """int / float / str / bool from a field annotation such as ``"int | None"`` (postponed annotations)."""
    if not isinstance(annotation, str):
        return annotation
    names = [part.strip() for part in annotation.split("|") if part.strip() != "None"]
    if len(names) == 1 and names[0] in _TYPES:
        return _TYPES[names[0]]
    if len(names) == 1 and names[0] == "bool":
        return bool
    return str


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _help(text: str, default: Any) -> str:
    """The help, with ``(default X)`` added unless it says its default itself (or there is none to say)."""
    if default is None or default is dataclasses.MISSING or isinstance(default, bool) or "default" in text:
        return text
    shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    return f"{text} (default {shown})".replace("%", "%%")


def add_flags(parser: argparse.ArgumentParser, config_cls, *, only: Iterable[str] | None = None,
              skip: Iterable[str] = (), required: Iterable[str] = (), help_overrides: dict | None = None,
              defaults: dict | None = None) -> None:
    """One flag per field of ``config_cls`` declared with :func:`setting` (``only`` / ``skip`` by field name).

    A command that shares a field but not its meaning can say so: ``required`` (field names), ``help_overrides``
    and ``defaults`` (field name → help / default for this command only).
    """
    only, skip, required = set(only) if only is not None else None, set(skip), set(required)
    flagged = []
    for field in dataclasses.fields(config_cls):
        meta = field.metadata
        if "help" not in meta or not meta["cli"] or field.name in skip or (only is not None and field.name not in only):
            continue
        default = (defaults or {}).get(field.name, _default(field))
        flags = list(meta["flags"] or [f"--{field.name}"])
        kwargs: dict[str, Any] = {"dest": field.name,
                                  "help": _help((help_overrides or {}).get(field.name, meta["help"]), default)}
        if field.name in required or default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        kind = meta["type"] or _base_type(field.type)
        if meta["action"] == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif meta["action"]:
            kwargs["action"] = meta["action"]
        elif kind is bool:
            kwargs["action"] = "store_false" if field.default is True else "store_true"
        else:
            kwargs["type"] = kind
            for key in ("choices", "nargs", "metavar", "const"):
                if meta.get(key) is not None:
                    kwargs[key] = list(meta[key]) if key == "choices" else meta[key]
        parser.add_argument(*flags, **kwargs)
        flagged.append(field.name)
    configs = parser.get_default(CONFIGS) or ()
    parser.set_defaults(**{CONFIGS: configs + ((config_cls, tuple(flagged)),)})  # for check_args


CONFIGS = "_flag_configs"  # in a parsed namespace: (config class, its fields that have a flag here) pairs


def from_args(config_cls, args: argparse.Namespace, **extra):
    """The config built from parsed flags (fields without a flag keep their defaults); ``extra`` wins."""
    names = {f.name for f in dataclasses.fields(config_cls) if f.init}
    values = {k: v for k, v in vars(args).items() if k in names}
    values.update(extra)
    return config_cls(**values)


def check_fields(config) -> None:
    """The type (whole number, number), ``minimum`` / ``maximum`` / ``choices`` of every :func:`setting` field;
    one line naming the field."""
    for field in dataclasses.fields(config):
        _check_value(field, getattr(config, field.name))


def check_args(args: argparse.Namespace) -> None:
    """:func:`check_fields` for parsed flags: every flag that came from a config field (:func:`add_flags`) is
    checked against that field's constraints, before a command does any work (the fields a command has no flag
    for are not looked at)."""
    given = vars(args)
    for config_cls, names in given.get(CONFIGS) or ():
        for field in dataclasses.fields(config_cls):
            if field.name in names:
                _check_value(field, given[field.name])


def _check_value(field: dataclasses.Field, value: Any) -> None:
    meta = field.metadata
    if "help" not in meta or value is None:
        return
    values = value if isinstance(value, (list, tuple)) else [value]
    base = _base_type(field.type) if meta.get("type") is None else None
    for item in values:
        if meta["choices"] is not None and item not in meta["choices"]:
            raise LabelwiseError(f"`{field.name}` must be one of {', '.join(map(str, meta['choices']))}, "
                                 f"got {item!r}")
        number = isinstance(item, numbers.Real) and not isinstance(item, bool)  # numpy scalars too
        if base is int and not (number and float(item).is_integer()):
            raise LabelwiseError(f"`{field.name}` must be a whole number, got {item!r}")
        if base is float and not (number and math.isfinite(item)):
            raise LabelwiseError(f"`{field.name}` must be a (finite) number, got {item!r}")
        if not number:
            continue
        if meta["minimum"] is not None and item < meta["minimum"]:
            raise LabelwiseError(f"`{field.name}` must be at least {meta['minimum']}, got {item}")
        if meta["maximum"] is not None and item > meta["maximum"]:
            raise LabelwiseError(f"`{field.name}` must be at most {meta['maximum']}, got {item}")
