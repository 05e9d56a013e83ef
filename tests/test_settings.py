"""Config dataclasses → CLI flags: one source for a setting's default and help."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from labelwise.errors import LabelwiseError
from labelwise.settings import add_flags, check_fields, from_args, setting


@dataclass
class Example:
    dataset_dir: str = setting(help="folder with train.txt")
    batch_size: int | None = setting(None, help="texts per step", minimum=1)
    rate: float = setting(0.1, help="a rate", minimum=0, maximum=1)
    loss: str = setting("bce", help="the loss", choices=("bce", "focal"))
    early_stop: bool = setting(False, help="stop early")
    baseline: bool = setting(True, help="skip the baseline", flags=["--no_baseline"])
    bf16: bool | None = setting(None, help="bfloat16", action="bool")
    widths: list = setting(help="ratios", default_factory=lambda: ["3/4"], nargs="+", type=str)
    api_only: int = setting(3, help="not a flag", cli=False)


def parse(argv):
    parser = argparse.ArgumentParser()
    add_flags(parser, Example)
    return parser, parser.parse_args(argv)


def test_flags_come_from_the_fields():
    parser, args = parse(["--dataset_dir", "d"])
    cfg = from_args(Example, args)
    assert cfg == Example(dataset_dir="d")
    _, args = parse(["--dataset_dir", "d", "--batch_size", "8", "--rate", "0.5", "--loss", "focal", "--early_stop",
                     "--no_baseline", "--no-bf16", "--widths", "1/2", "1/4"])
    cfg = from_args(Example, args)
    assert (cfg.batch_size, cfg.rate, cfg.loss, cfg.early_stop, cfg.baseline, cfg.bf16, cfg.widths) == \
           (8, 0.5, "focal", True, False, False, ["1/2", "1/4"])
    text = parser.format_help()
    assert "a rate (default 0.1)" in text and "--api_only" not in text
    with pytest.raises(SystemExit):
        parse([])  # dataset_dir has no default: required
    with pytest.raises(SystemExit):
        parse(["--dataset_dir", "d", "--loss", "hinge"])


def test_check_fields_names_the_field():
    check_fields(Example(dataset_dir="d"))
    for bad, message in ((dict(batch_size=0), "`batch_size` must be at least 1, got 0"),
                         (dict(rate=2.0), "`rate` must be at most 1, got 2.0"),
                         (dict(loss="hinge"), "`loss` must be one of bce, focal, got 'hinge'")):
        with pytest.raises(LabelwiseError, match=message.replace("(", r"\(")):
            check_fields(Example(dataset_dir="d", **bad))


def test_a_command_can_give_a_shared_field_its_own_default_and_help():
    parser = argparse.ArgumentParser()
    add_flags(parser, Example, only=("dataset_dir", "widths"), defaults={"dataset_dir": "data"},
              help_overrides={"dataset_dir": "where the data is"})
    args = parser.parse_args([])
    assert (args.dataset_dir, args.widths) == ("data", ["3/4"]) and not hasattr(args, "rate")
    text = " ".join(parser.format_help().split())
    assert "where the data is (default data)" in text and "ratios (default 3/4)" in text


def test_every_config_validates_the_same_way():
    from labelwise.analysis.sparse import SparseConfig
    from labelwise.compress.config import PruneConfig
    from labelwise.serve.config import ServeConfig
    from labelwise.training.config import TrainConfig

    for config in (TrainConfig(dataset_dir="d"), PruneConfig(dataset_dir="d"), SparseConfig(dataset_dir="d"),
                   ServeConfig()):
        assert config.validate() is config
    for config, message in ((TrainConfig(dataset_dir="d", pooling="max"), "`pooling` must be one of auto, mean, cls"),
                            (TrainConfig(dataset_dir="d", learning_rate=2.0), "`learning_rate` must be in"),
                            (PruneConfig(dataset_dir="d", save_steps=0), "`save_steps` must be at least 1"),
                            (SparseConfig(dataset_dir="d", aug_type="x"), "`aug_type` must be one of"),
                            (ServeConfig(max_wait_ms=-1), "`max_wait_ms` must be at least 0")):
        with pytest.raises(LabelwiseError, match=message):
            config.validate()
