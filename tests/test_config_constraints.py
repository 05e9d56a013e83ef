"""Bad values for every declared constraint of every config, generated from the fields' metadata (the way
scikit-learn derives invalid parameters from its declared constraints): each is refused by ``validate()`` in one
line naming the field."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from labelwise.analysis.sparse import SparseConfig
from labelwise.compress.config import PruneConfig
from labelwise.errors import LabelwiseError
from labelwise.select.run import SelectConfig
from labelwise.serve.config import ServeConfig
from labelwise.settings import _base_type
from labelwise.training.config import TrainConfig

DATA = Path(__file__).resolve().parents[1] / "data" / "divorce"
VALID = {TrainConfig: {"dataset_dir": str(DATA)}, PruneConfig: {"dataset_dir": str(DATA)},
         SparseConfig: {"dataset_dir": str(DATA)}, ServeConfig: {}, SelectConfig: {"pool_file": str(DATA / "data.txt")}}


def _bad_values(field: dataclasses.Field):
    """(why, value) pairs that break ``field``'s declared constraints."""
    meta, base = field.metadata, _base_type(field.type)
    step = 1 if base is int else 1e-3
    if meta.get("choices"):
        yield "not a choice", "no-such-choice" if all(isinstance(c, str) for c in meta["choices"]) else -12345
    if meta.get("minimum") is not None:
        yield "below the minimum", meta["minimum"] - step
    if meta.get("maximum") is not None:
        yield "above the maximum", meta["maximum"] + step
    if base in (int, float) and meta.get("type") is None and meta.get("action") is None:
        yield "not a number", "many"
    if base is int and meta.get("type") is None and meta.get("action") is None:
        yield "not whole", 2.5
    if base is float and meta.get("type") is None:
        yield "not finite", float("nan")


CASES = [pytest.param(cls, f.name, value, id=f"{cls.__name__}.{f.name}: {why}")
         for cls in VALID for f in dataclasses.fields(cls) if "help" in f.metadata
         for why, value in _bad_values(f)]


def test_every_valid_config_validates():
    for cls, kwargs in VALID.items():
        cls(**kwargs).validate()


def test_every_config_declares_constraints():
    assert len(CASES) > 60  # the generator found the fields (a rename of the metadata keys would empty it)


@pytest.mark.parametrize("cls, name, value", CASES)
def test_a_value_outside_a_declared_constraint_is_refused_naming_the_field(cls, name, value):
    config = dataclasses.replace(cls(**VALID[cls]), **{name: value})
    with pytest.raises(LabelwiseError) as err:
        config.validate()
    message = str(err.value)
    assert f"`{name}`" in message and "\n" not in message, message


def _flag_configs() -> set[type]:
    """Every config class some command's flags are made from (:func:`labelwise.settings.add_flags` records them)."""
    import argparse

    from labelwise.cli.main import build_parser
    from labelwise.settings import CONFIGS

    found, parsers = set(), [build_parser()]
    while parsers:
        parser = parsers.pop()
        found |= {cls for cls, _ in parser.get_default(CONFIGS) or ()}
        parsers += [sub for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                    for sub in a.choices.values()]
    return found


FLAG_CASES = [pytest.param(cls, f.name, value, id=f"--{f.name} ({cls.__name__}): {why}")
              for cls in sorted(_flag_configs(), key=lambda c: c.__name__) for f in dataclasses.fields(cls)
              if "help" in f.metadata and f.metadata["cli"] for why, value in _bad_values(f)]


def test_the_flags_come_from_the_configs_and_declare_constraints():
    names = {cls.__name__ for cls in _flag_configs()}
    assert {"TrainConfig", "ExportConfig", "ServerOptions", "DirtyOptions", "RayOptions", "SplitOptions"} <= names
    assert len(FLAG_CASES) > len(CASES)


@pytest.mark.parametrize("cls, name, value", FLAG_CASES)
def test_a_flag_outside_its_fields_constraint_is_refused_before_any_work(cls, name, value):
    import argparse

    from labelwise.settings import CONFIGS, check_args

    args = argparse.Namespace(**{name: value, CONFIGS: ((cls, (name,)),)})
    with pytest.raises(LabelwiseError) as err:
        check_args(args)
    assert f"`{name}`" in str(err.value) and "\n" not in str(err.value)


def test_the_command_line_names_the_flag_in_one_line(capsys):
    from labelwise.cli.main import main

    assert main(["-q", "predict", "--num_actors", "0"]) == 2
    assert capsys.readouterr().err.strip() == "labelwise: error: --num_actors must be at least 1, got 0"
    assert main(["-q", "export", "--format", "openvino", "--fp16"]) == 2
    assert capsys.readouterr().err.strip() == ("labelwise: error: --fp16 and --triton are for format onnx (an "
                                               "OpenVINO export runs fp32, bf16 or int8)")
