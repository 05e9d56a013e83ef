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
