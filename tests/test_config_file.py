"""--config run.yaml and --print_config: a run written down as a file and replayed, flags winning over the file."""
from __future__ import annotations

import json

import pytest
import yaml

from labelwise.cli.main import build_parser, main


def parsed(argv: list[str]) -> dict:
    from labelwise.cli.config_file import apply_config

    parser = build_parser()
    apply_config(parser, argv)
    args = vars(parser.parse_args(argv))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()  # YAML writes tuples as lists
            if k not in ("config", "print_config", "func")}


@pytest.mark.parametrize("argv", [
    ["train", "--dataset_dir", "d", "--epochs", "2", "--no_baseline", "--label_columns", "a", "b", "--no-warmup"],
    ["serve", "--model_path", "export", "--max_texts", "8", "--cors_origins", "https://a.example.com"],
    ["prune", "--params_path", "ckpt", "--dataset_dir", "d", "--width_mult_list", "0.5"],
    ["data", "sparse", "--params_path", "ckpt", "--dataset_dir", "d"],
    ["select", "--dataset_dir", "d", "--num", "5"],
])
def test_print_config_then_config_replays_the_same_settings(argv, tmp_path, capsys):
    assert main([*argv, "--print_config"]) == 0
    text = capsys.readouterr().out
    (tmp_path / "run.yaml").write_text(text, encoding="utf-8")
    command = argv[:2] if argv[0] == "data" else argv[:1]
    assert parsed([*command, "--config", str(tmp_path / "run.yaml")]) == parsed(argv)
    assert yaml.safe_load(text)  # a plain mapping a person can edit


def test_flags_beside_the_config_win(tmp_path):
    (tmp_path / "run.yaml").write_text("dataset_dir: d\nepochs: 7\nlearning_rate: 0.001\n", encoding="utf-8")
    got = parsed(["train", "--config", str(tmp_path / "run.yaml"), "--epochs", "2"])
    assert (got["dataset_dir"], got["epochs"], got["learning_rate"]) == ("d", 2, 0.001)


@pytest.mark.parametrize("content,words", [
    ("dataset_dir: d\nlearning_rte: 0.1\n", "unknown key 'learning_rte'; did you mean 'learning_rate'?"),
    ("- a\n- b\n", "holds a YAML list"),
    ("dataset_dir: [unclosed\n", "not YAML"),
])
def test_a_bad_config_is_one_line(content, words, tmp_path, capsys):
    (tmp_path / "run.yaml").write_text(content, encoding="utf-8")
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "run.yaml" in err[0]


def test_a_config_value_is_validated_as_a_flag_is(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("dataset_dir: d\nlearning_rate: 5\n", encoding="utf-8")
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 2
    assert "--learning_rate must be in (0, 1), got 5" in capsys.readouterr().err


def test_a_training_run_from_its_config(tiny_zh_encoder, divorce_small, tmp_path, capsys):
    flags = ["train", "--dataset_dir", str(divorce_small), "--save_dir", str(tmp_path / "a"), "--model_name",
             str(tiny_zh_encoder), "--epochs", "1", "--max_seq_length", "16", "--max_train_samples", "32",
             "--no_baseline"]
    assert main([*flags, "--print_config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    config["save_dir"] = str(tmp_path / "b")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(flags) == 0 and main(["train", "--config", str(tmp_path / "run.yaml")]) == 0
    a, b = (json.loads((tmp_path / x / "labelwise.json").read_text(encoding="utf-8"))["training_args"] for x in "ab")
    assert {k: v for k, v in a.items() if k != "save_dir"} == {k: v for k, v in b.items() if k != "save_dir"}
