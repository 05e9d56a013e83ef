"""The data-tool commands end to end through `labelwise.cli.main`, on divorce and GoEmotions subsets."""
from __future__ import annotations

import json

import pytest

from labelwise.cli.main import main
from labelwise.data.annotation import write_doccano
from labelwise.data.dataset import load_dataset, read_examples


def test_doccano_command_builds_a_dataset_from_divorce(divorce_small, tmp_path, capsys):
    train = load_dataset(divorce_small).train
    write_doccano(tmp_path / "export.jsonl", train)
    args = ["-q", "doccano", "--doccano_file", str(tmp_path / "export.jsonl"), "--save_dir", str(tmp_path / "ds"),
            "--splits", "0.7", "0.15", "0.15", "--stratify", "--seed", "5"]
    assert main(args) == 0
    assert "300 examples" in capsys.readouterr().out
    ds = load_dataset(tmp_path / "ds")
    assert ds.labels == sorted({label for e in train for label in e.labels})
    assert len(ds.train) + len(ds.dev) + len(ds.test) == 300 and len(ds.test) == pytest.approx(45, abs=3)
    assert sorted((e.text, e.labels) for e in ds.train + ds.dev + ds.test) == sorted((e.text, e.labels) for e in train)
    # a second run must not replace the dataset
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "or allow overwriting them (--overwrite)" in err and err.strip().count("\n") == 0


def test_doccano_command_reports_a_bad_label_in_one_line(tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": ["x"]}\n{"text": "b", "label": ["x,y"]}\n',
                                        encoding="utf-8")
    assert main(["doccano", "--doccano_file", str(tmp_path / "bad.jsonl"), "--save_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.jsonl:2: label 'x,y' contains a comma" in err
    assert not (tmp_path / "o").exists()


def test_doccano_output_file_for_reannotated_data(divorce_small, tmp_path):
    examples = read_examples(divorce_small / "train.txt")[:5]
    write_doccano(tmp_path / "fixed.jsonl", examples)
    assert main(["-q", "doccano", "--doccano_file", str(tmp_path / "fixed.jsonl"), "--output_file",
                 str(tmp_path / "train_dirty.txt"), "--label_file", str(divorce_small / "label.txt")]) == 0
    assert [(e.text, e.labels) for e in read_examples(tmp_path / "train_dirty.txt")] == \
        [(e.text, e.labels) for e in examples]


def test_labelstudio_command_on_goemotions(goemotions_small, tmp_path, capsys):
    train = load_dataset(goemotions_small).train[:60]
    tasks = [{"id": i, "data": {"text": e.text}, "annotations": [{"result": [
        {"type": "choices", "from_name": "emotion", "value": {"choices": list(e.labels)}}]}]}
        for i, e in enumerate(train)]
    (tmp_path / "ls.json").write_text(json.dumps(tasks), encoding="utf-8")
    assert main(["-q", "labelstudio", "--labelstudio_file", str(tmp_path / "ls.json"), "--save_dir",
                 str(tmp_path / "ds"), "--splits", "0.8", "0.2", "--is_shuffle", "false"]) == 0
    ds = load_dataset(tmp_path / "ds")
    assert [e.text for e in ds.train] == [e.text for e in train[:48]]  # file order kept without shuffle
    assert [e.labels for e in ds.dev] == [e.labels for e in train[48:]]
    assert ds.data == [e.text for e in train[48:]]


@pytest.mark.parametrize("dataset", ["divorce_small", "goemotions_small"])
def test_data_augment_command(dataset, request, tmp_path, capsys):
    folder = request.getfixturevalue(dataset)
    train = tmp_path / "train.txt"
    train.write_text("".join((folder / "train.txt").read_text(encoding="utf-8").splitlines(keepends=True)[:20]),
                     encoding="utf-8")
    assert main(["-q", "data", "augment", "--train_path", str(train), "--aug_strategy", "substitute",
                 "--create_n", "2", "--seed", "1"]) == 0
    created = read_examples(tmp_path / "aug.txt")
    originals = {e.text: e.labels for e in read_examples(train)}
    assert 10 <= len(created) <= 40 and all(e.text not in originals for e in created)
    assert "augmented examples from 20" in capsys.readouterr().out
    assert main(["-q", "data", "augment", "--train_path", str(train), "--aug_type", "mlm"]) == 2
    assert "--mlm_model" in capsys.readouterr().err


def test_data_sparse_command(divorce_small, untrained_zh_checkpoint, tmp_path, capsys):
    assert main(["-q", "data", "sparse", "--dataset_dir", str(divorce_small), "--params_path",
                 str(untrained_zh_checkpoint), "--output_dir", str(tmp_path), "--sparse_num", "5", "--support_num", "8",
                 "--support_threshold", "0", "--aug_strategy", "delete"]) == 0
    out = capsys.readouterr().out
    assert "sparse data: 5 dev examples" in out and "model micro-F1 on the sparse examples" in out
    dev = {(e.text, e.labels) for e in read_examples(divorce_small / "dev.txt")}
    assert len(read_examples(tmp_path / "sparse.txt")) == 5
    assert all((e.text, e.labels) in dev for e in read_examples(tmp_path / "sparse.txt"))
    support = read_examples(tmp_path / "support.txt")
    train = read_examples(tmp_path / "train_sparse_aug.txt")
    assert support and len(train) == 300 + len(support)


@pytest.mark.parametrize("model, dataset", [("untrained_zh_checkpoint", "divorce_small"),
                                            ("untrained_en_checkpoint", "goemotions_small")])
def test_interpret_examples_command(model, dataset, request, tmp_path, capsys):
    ckpt, folder = request.getfixturevalue(model), request.getfixturevalue(dataset)
    train = read_examples(folder / "train.txt")
    bad = tmp_path / "bad_case.txt"
    bad.write_text("Text\tLabel\tPrediction\n" + "".join(f"{e.text}\t{','.join(e.labels)}\t\n" for e in train[:3]),
                   encoding="utf-8")
    result = tmp_path / "sent_interpret.txt"
    assert main(["-q", "interpret", "examples", "--dataset_dir", str(folder), "--params_path", str(ckpt),
                 "--interpret_input_file", str(bad), "--interpret_result_file", str(result), "--top_k", "2"]) == 0
    blocks = result.read_text(encoding="utf-8").strip().split("\n\n")
    assert len(blocks) == 3
    lines = blocks[1].splitlines()
    assert lines[0] == f"text: {train[1].text}" and lines[1].startswith("predict label:")
    assert lines[2] == f"label: {','.join(train[1].labels)}" and lines[3] == "examples with positive influence"
    assert lines[4].startswith(f"support1 text: {train[1].text}\tlabel: {','.join(train[1].labels)}\tscore: 1.0000")
    assert lines[5].startswith("support2 text: ") and len(lines) == 6
    capsys.readouterr()
    assert main(["-q", "interpret", "examples", "--dataset_dir", str(folder), "--params_path", str(ckpt),
                 "--text", train[0].text, "--interpret_result_file", "-", "--format", "json", "--top_k", "1"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["label"] is None and item["supports"][0]["text"] == train[0].text
    assert item["supports"][0]["labels"] == list(train[0].labels)


def test_interpret_examples_never_writes_over_its_input(divorce_small, untrained_zh_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad_case.txt"
    bad.write_text("婚生子杨某甲由原告抚养\n", encoding="utf-8")
    assert main(["-q", "interpret", "examples", "--dataset_dir", str(divorce_small), "--params_path",
                 str(untrained_zh_checkpoint), "--interpret_input_file", str(bad), "--interpret_result_file",
                 str(bad)]) == 2
    assert f"{bad}: this output is also an input" in capsys.readouterr().err
    assert bad.read_text(encoding="utf-8") == "婚生子杨某甲由原告抚养\n"


def test_analysis_commands_live_in_the_cli_and_the_modules_keep_only_the_api(capsys):
    from labelwise.analysis import dirty, interpret_words

    for module in (dirty, interpret_words):
        assert not hasattr(module, "add_arguments") and not hasattr(module, "run")
        assert "argparse" not in vars(module)
    for command, flag in ((["data", "dirty", "--help"], "--representer_score"),
                          (["interpret", "words", "--help"], "--interpret_result_file")):
        with pytest.raises(SystemExit) as stop:
            main(command)
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: labelwise {command[0]} {command[1]}" in out and flag in out
