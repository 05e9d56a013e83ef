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


# ---- the active-learning loop: select → annotate → merge back (--merge_into) ---------------------------------------
POOL = ["原告与被告于2010年登记结婚，婚后育有一子。", "被告每月支付抚养费八百元。", "双方自愿离婚。",
        "婚后共同财产房屋一套归原告所有。", "被告对原告有家庭暴力行为。", "原告要求被告返还彩礼。"]


@pytest.fixture()
def dataset_copy(divorce_small, tmp_path):
    import shutil

    folder = tmp_path / "data"
    shutil.copytree(divorce_small, folder)
    return folder


def _write_pool(dataset, path) -> list[str]:
    ds = load_dataset(dataset)
    texts = [e.text for e in ds.train[:3]] + [e.text for e in ds.dev[:2]] + POOL + POOL[:2]
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return texts


def test_select_annotate_in_doccano_merge_and_select_again(tiny_zh_checkpoint, dataset_copy, tmp_path, capsys):
    data, pool, tasks = dataset_copy, tmp_path / "pool.txt", tmp_path / "next.jsonl"
    _write_pool(data, pool)
    train_before, dev_before = (data / "train.txt").read_bytes(), (data / "dev.txt").read_bytes()
    labels = load_dataset(data).labels
    assert main(["-q", "select", "--params_path", str(tiny_zh_checkpoint), "--dataset_dir", str(data),
                 "--pool_file", str(pool), "--num", "4", "--output_file", str(tasks)]) == 0
    out = capsys.readouterr().out
    assert "4 texts selected (auto: each label's most doubtful texts) from a pool of 13: 5 already in the dataset " \
        "and 2 repeats" in out
    assert f"labelwise doccano --doccano_file export.jsonl --merge_into {data}" in out

    # the annotator in doccano: corrects the guesses; doccano exports its own ids and a Comments field
    rows = [json.loads(line) for line in tasks.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 and {r["text"] for r in rows} <= set(POOL)
    annotated = [labels[:2], [], [labels[3]], rows[3]["label"] or [labels[4]]]  # the last guess accepted
    train0 = load_dataset(data).train[0]
    other = [x for x in labels if x not in train0.labels][:1]
    export = [{"id": 40 + i, "text": r["text"], "label": a, "Comments": []} for i, (r, a) in enumerate(zip(rows, annotated))]
    export.append({"id": 99, "text": train0.text, "label": other, "Comments": []})  # already in train, relabelled
    (tmp_path / "export.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in export),
                                           encoding="utf-8")
    merge = ["-q", "doccano", "--doccano_file", str(tmp_path / "export.jsonl"), "--merge_into", str(data)]
    assert main(merge) == 0
    out = capsys.readouterr().out
    assert f"4 new examples appended to {data / 'train.txt'} (lines 301-304" in out
    assert "1 already in train, 0 in dev, 0 in test" in out and "new examples without any label: 1" in out
    assert "train.txt keeps its labels" in out and f"{data / 'train.txt'}:1 " in out
    after = (data / "train.txt").read_bytes()
    assert after.startswith(train_before) and (data / "dev.txt").read_bytes() == dev_before
    new = read_examples(data / "train.txt", labels)[300:]
    assert [(e.text, list(e.labels)) for e in new] == [(r["text"], a) for r, a in zip(rows, annotated)]
    assert main(merge) == 0  # twice: nothing more
    assert "nothing new to add" in capsys.readouterr().out and (data / "train.txt").read_bytes() == after

    # the next round skips what was merged; asked for more than is left, it takes the rest and says so
    assert main(["-q", "select", "--params_path", str(tiny_zh_checkpoint), "--dataset_dir", str(data),
                 "--pool_file", str(pool), "--num", "10", "--output_file", str(tasks), "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "2 texts selected" in out and "10 were asked for" in out and "all of them were taken" in out
    assert {json.loads(line)["text"] for line in tasks.read_text(encoding="utf-8").splitlines()} == \
        set(POOL) - {r["text"] for r in rows}


def _ls_export(tasks: list[dict], answers: list[list[str] | None]) -> list[dict]:
    """Label Studio's JSON export of ``tasks`` (as `labelwise select --format labelstudio` wrote them): each answered
    task gets an annotation; None leaves a task unannotated (it keeps only the model's prediction)."""
    out = []
    for i, (task, answer) in enumerate(zip(tasks, answers)):
        item = {"id": 7 + i, "data": task["data"], "predictions": task.get("predictions", []), "annotations": []}
        if answer is not None:
            item["annotations"] = [{"id": 70 + i, "was_cancelled": False, "result": [
                {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": answer}}]}]
        out.append(item)
    return out


def test_select_for_label_studio_and_merge(untrained_zh_checkpoint, dataset_copy, tmp_path, capsys):
    data, pool = dataset_copy, tmp_path / "pool.txt"
    _write_pool(data, pool)
    labels = load_dataset(data).labels
    assert main(["-q", "select", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(data),
                 "--pool_file", str(pool), "--num", "3", "--format", "labelstudio", "--output_file",
                 str(tmp_path / "next.json")]) == 0
    assert f"--labelstudio_file export.json --merge_into {data}" in capsys.readouterr().out
    tasks = json.loads((tmp_path / "next.json").read_text(encoding="utf-8"))
    assert all(t["predictions"][0]["model_version"].startswith("labelwise") for t in tasks)
    export = tmp_path / "export.json"
    train_before = (data / "train.txt").read_bytes()

    # a label that is not in label.txt (typed into the labelling config): nothing merged, one line naming it
    export.write_text(json.dumps(_ls_export(tasks, [[labels[0]], ["不在标签表里"], None])), encoding="utf-8")
    assert main(["-q", "labelstudio", "--labelstudio_file", str(export), "--merge_into", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"labelwise: error: {export}: the task with text '{tasks[1]['data']['text']}': label "
                          f"'不在标签表里' is not in {data / 'label.txt'}") and "nothing was merged" in err
    assert (data / "train.txt").read_bytes() == train_before

    export.write_text(json.dumps(_ls_export(tasks, [[labels[0]], [labels[5], labels[1]], None])), encoding="utf-8")
    assert main(["-q", "labelstudio", "--labelstudio_file", str(export), "--merge_into", str(data)]) == 0
    assert "2 new examples appended" in capsys.readouterr().out
    new = read_examples(data / "train.txt", labels)[300:]
    assert [(e.text, e.labels) for e in new] == [(tasks[0]["data"]["text"], (labels[0],)),
                                                 (tasks[1]["data"]["text"], (labels[5], labels[1]))]
    assert (data / "train.txt").read_bytes().startswith(train_before)
    # --merge_into appends to a dataset: a split or an output file of its own makes no sense beside it
    assert main(["-q", "labelstudio", "--labelstudio_file", str(export), "--merge_into", str(data),
                 "--output_file", str(tmp_path / "o.txt")]) == 2
    assert "--output_file and --merge_into do not go together" in capsys.readouterr().err


def test_labelstudio_merge_into_a_dataset_whose_tree_is_spelled_with_slashes(tmp_path, capsys):
    data = tmp_path / "slash"
    data.mkdir()
    (data / "label.txt").write_text("体育\n体育/足球\n财经\n", encoding="utf-8")
    (data / "train.txt").write_text("梅西进球\t体育/足球\n", encoding="utf-8")  # a leaf alone: its parent implied
    (data / "dev.txt").write_text("央行降准\t财经\n", encoding="utf-8")
    before = (data / "train.txt").read_bytes()
    export = tmp_path / "export.json"
    tasks = [{"id": i + 1, "data": {"text": text}, "annotations": [{"result": [
        {"from_name": "tax", "to_name": "text", "type": "taxonomy", "value": {"taxonomy": paths}}]}]}
        for i, (text, paths) in enumerate([("梅西进球", [["体育", "足球"]]), ("C罗转会", [["体育", "足球"]]),
                                           ("股市大涨", [["财经"]])])]
    export.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    merge = ["-q", "labelstudio", "--labelstudio_file", str(export), "--merge_into", str(data)]
    assert main([*merge, "--hierarchy_sep", "/"]) == 0
    out = capsys.readouterr().out
    assert "2 new examples appended" in out and "1 already in train" in out and "conflicts" not in out
    assert (data / "train.txt").read_bytes() == before + "C罗转会\t体育,体育/足球\n股市大涨\t财经\n".encode()
    assert [e.labels for e in load_dataset(data, hierarchy_sep="/").train] == [
        ("体育", "体育/足球"), ("体育", "体育/足球"), ("财经",)]
    # the default separator (##) cannot join the taxonomy path into this dataset's names: nothing is merged
    assert main(merge) == 2
    assert "label '体育##足球' is not in" in capsys.readouterr().err
