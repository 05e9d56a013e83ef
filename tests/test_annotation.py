"""doccano / Label Studio import and doccano export (labelwise.annotation)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from labelwise.cli.main import main
from labelwise.data.annotation import (
    check_splits,
    label_counts,
    read_doccano,
    read_label_studio,
    split_indices,
    write_dataset,
    write_doccano,
    write_labelled,
)
from labelwise.data.dataset import Example, load_dataset, multi_hot, read_examples
from labelwise.data.labelstudio import read_tasks
from labelwise.errors import DataError, LabelwiseError


def jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_read_doccano_cleans_text_and_labels(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [
        {"id": 1, "text": "第一\t行\n换行", "label": ["b", "a", "b"]},
        {"id": 2, "data": " 旧版导出 ", "label": []},
        {"id": 3, "text": "one label as a string", "label": "x"}])
    examples = read_doccano(path)
    assert [(e.text, e.labels, e.line) for e in examples] == [
        ("第一 行 换行", ("b", "a"), 1), ("旧版导出", (), 2), ("one label as a string", ("x",), 3)]


@pytest.mark.parametrize("line, message", [
    ('{"text": "t", "label": ["a,b"]}', r"d.jsonl:2: label 'a,b' contains a comma"),
    ('{"text": "t", "label": [1]}', r"d.jsonl:2: 'label' must be a list of label names"),
    ('{"text": "t", "label": ["a"]', r"d.jsonl:2: not valid JSON"),
    ('{"label": ["a"]}', r"d.jsonl:2: no 'text' \(or 'data'\) field"),
    ('{"text": " \\t ", "label": ["a"]}', r"d.jsonl:2: empty text"),
])
def test_read_doccano_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok", "label": ["a"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_doccano(path)


def many(n=100, rare_every=20):
    return [Example(f"text {i}", ("common",) + (("rare",) if i % rare_every == 0 else ())) for i in range(n)]


def test_check_splits():
    assert check_splits([0.7, 0.2, 0.1]) == [0.7, 0.2, 0.1]  # exact in decimal, not in binary floats
    for bad, message in (([0.5, 0.4], "sum to 1"), ([0.5, 0.2, 0.2, 0.1], "1, 2 or 3"), ([1.2, -0.2], "positive")):
        with pytest.raises(LabelwiseError, match=message):
            check_splits(bad)


def test_random_split_really_shuffles_and_is_reproducible():
    examples = many()
    a = split_indices(examples, [0.8, 0.2], shuffle=True, seed=3, stratify=False)
    b = split_indices(examples, [0.8, 0.2], shuffle=True, seed=3, stratify=False)
    c = split_indices(examples, [0.8, 0.2], shuffle=True, seed=4, stratify=False)
    assert [len(p) for p in a] == [80, 20]
    assert all((x == y).all() for x, y in zip(a, b)) and not (a[1] == c[1]).all()
    assert sorted(np.concatenate(a).tolist()) == list(range(100))
    assert a[0].tolist() != list(range(80))  # PaddleNLP's shuffle did nothing; this one does
    plain = split_indices(examples, [0.8, 0.2], shuffle=False)
    assert plain[0].tolist() == list(range(80)) and plain[1].tolist() == list(range(80, 100))


def test_stratified_split_puts_a_rare_label_in_every_split():
    examples = many(100, rare_every=20)  # 5 examples carry "rare"
    parts = split_indices(examples, [0.6, 0.2, 0.2], seed=0, stratify=True)
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    assert [len(p) for p in parts] == pytest.approx([60, 20, 20], abs=2)
    for part in parts:
        assert any("rare" in examples[i].labels for i in part)


def rare_labels(n=200):
    """Every example is "common"; "r3", "r5" and "r8" sit on 3, 5 and 8 of them, some together."""
    def labels(i):
        return ("common",) + tuple(name for name, every in (("r3", 67), ("r5", 40), ("r8", 25)) if i % every == 7)
    return [Example(f"text {i}", labels(i)) for i in range(n)]


def missing_in(examples, parts):
    """Label → how many splits have none of it."""
    labels = sorted({label for e in examples for label in e.labels})
    counts = label_counts(examples, labels, dict(enumerate(parts)))
    return {label: sum(1 for c in per_split.values() if not c) for label, per_split in counts.items()}


def test_stratification_is_the_default_and_rare_labels_reach_every_split():
    examples = rare_labels()
    assert [sum(label in e.labels for e in examples) for label in ("r3", "r5", "r8")] == [3, 5, 8]
    random_misses = 0
    for seed in range(10):
        parts = split_indices(examples, [0.8, 0.1, 0.1], seed=seed)
        assert sorted(np.concatenate(parts).tolist()) == list(range(200))
        assert [len(p) for p in parts] == pytest.approx([160, 20, 20], abs=2)
        assert not any(missing_in(examples, parts).values()), seed  # 3 examples, 3 splits: one each
        random = split_indices(examples, [0.8, 0.1, 0.1], seed=seed, stratify=False)
        random_misses += any(missing_in(examples, random).values())
    assert random_misses >= 8  # a plain shuffle leaves some rare label out of dev or test almost every time


def test_stratified_split_is_seeded():
    examples = rare_labels()
    a, b = (split_indices(examples, [0.7, 0.15, 0.15], seed=5) for _ in range(2))
    c = split_indices(examples, [0.7, 0.15, 0.15], seed=6)
    assert all((x == y).all() for x, y in zip(a, b))
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(a, c))
    assert split_indices(examples, [0.8, 0.2], shuffle=False)[0].tolist() == list(range(160))  # file order kept


def test_write_dataset_counts_labels_per_split_and_warns_about_rare_ones(tmp_path, caplog):
    examples = rare_labels() + [Example("only twice a", ("twice",)), Example("only twice b", ("twice",))]
    with caplog.at_level("WARNING", logger="labelwise"):
        report = write_dataset(examples, tmp_path / "ds", [0.8, 0.1, 0.1], seed=2)
    ds = load_dataset(tmp_path / "ds")
    for name, split in (("train", ds.train), ("dev", ds.dev), ("test", ds.test)):
        for label in ds.labels:
            assert report.counts[label][name] == sum(label in e.labels for e in split)
    assert report.method == "stratified" and report.counts["r3"] == {"train": 1, "dev": 1, "test": 1}
    assert len(report.warnings) == 1 and "fewer examples than the 3 splits" in report.warnings[0]
    assert report.warnings[0].count("twice") == 1 and "r3" not in report.warnings[0]
    assert report.warnings[0] in caplog.text
    summary = report.summary()
    assert "(stratified split)" in summary and "examples per label:  train    dev   test  label" in summary
    assert " " * 20 + f"{report.counts['r5']['train']:>6}      {report.counts['r5']['dev']} " in summary
    random = write_dataset(examples, tmp_path / "random", [0.8, 0.1, 0.1], seed=2, stratify=False)
    assert random.method == "random" and any("no example in" in w for w in random.warnings)


def test_doccano_command_stratifies_unless_told_not_to(tmp_path, capsys):
    write_doccano(tmp_path / "export.jsonl", rare_labels())
    base = ["doccano", "--doccano_file", str(tmp_path / "export.jsonl"), "--splits", "0.8", "0.1", "0.1"]
    assert main(base + ["--save_dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "(stratified split)" in out and "  r3" in out
    assert all("r3" in {label for e in split for label in e.labels}
               for split in (load_dataset(tmp_path / "a").dev, load_dataset(tmp_path / "a").test))
    assert main(base + ["--save_dir", str(tmp_path / "b"), "--stratify", "false"]) == 0
    assert "(random split)" in capsys.readouterr().out


def test_write_dataset_writes_a_loadable_folder(tmp_path):
    examples = [Example(f"文本{i}", ("乙", "甲") if i % 3 else ("丙",)) for i in range(50)]
    report = write_dataset(examples, tmp_path / "ds", [0.6, 0.2, 0.2], seed=1)
    ds = load_dataset(tmp_path / "ds")
    assert ds.labels == ["丙", "乙", "甲"]  # sorted label.txt
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (30, 10, 10) == tuple(report.sizes.values())
    everything = {(e.text, e.labels) for e in ds.train + ds.dev + ds.test}
    assert everything == {(e.text, e.labels) for e in examples}
    assert ds.data == [e.text for e in ds.test]  # data.txt: texts of the last split, as PaddleNLP
    assert "50 examples, 3 labels" in report.summary()


def test_write_dataset_never_clobbers_silently(tmp_path):
    examples = many(10)
    write_dataset(examples, tmp_path, [1.0])
    before = (tmp_path / "train.txt").read_text(encoding="utf-8")
    with pytest.raises(LabelwiseError, match="train.txt, .*label.txt, .*data.txt: already exist; .*allow overwriting them") as err:
        write_dataset(examples[:5], tmp_path, [1.0])
    assert "--" not in str(err.value)  # a library error names no command-line flag
    assert (tmp_path / "train.txt").read_text(encoding="utf-8") == before
    write_dataset(examples[:5], tmp_path, [1.0], overwrite=True)
    assert len(read_examples(tmp_path / "train.txt")) == 5


def test_write_labelled_checks_labels(tmp_path):
    (tmp_path / "label.txt").write_text("a\nb\n", encoding="utf-8")
    write_labelled([Example("x", ("a",))], tmp_path / "fixed.txt", tmp_path / "label.txt")
    assert read_examples(tmp_path / "fixed.txt") == [Example("x", ("a",), 1)]
    with pytest.raises(DataError, match="label 'c' is not in"):
        write_labelled([Example("y", ("c",), 4)], tmp_path / "other.txt", tmp_path / "label.txt")


def test_write_doccano_round_trip(tmp_path):
    items = [Example("文本一", ("a", "b")), "只有文本", ("pair text", ["c"])]
    path = write_doccano(tmp_path / "out.jsonl", items, meta=[{"score": 0.5}, {}, {"id": 99, "note": "n"}])
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records[0] == {"id": 1, "text": "文本一", "label": ["a", "b"], "score": 0.5}
    assert records[2] == {"id": 3, "text": "pair text", "label": ["c"], "note": "n"}  # our id wins
    assert [(e.text, e.labels) for e in read_doccano(path)] == [
        ("文本一", ("a", "b")), ("只有文本", ()), ("pair text", ("c",))]


def ls_task(text, *annotations, **extra):
    return {"id": 1, "data": {"text": text, **extra}, "annotations": list(annotations)}


def choices(*labels, name="label", cancelled=False):
    return {"was_cancelled": cancelled, "result": [
        {"type": "choices", "from_name": name, "to_name": "text", "value": {"choices": list(labels)}}]}


def test_read_label_studio_full_export(tmp_path):
    tasks = [
        ls_task("first", choices("a", "b")),
        ls_task("second", choices("x", cancelled=True), choices("b")),  # cancelled one ignored
        ls_task("third"),  # not annotated yet: skipped and counted
        {"id": 4, "data": {"text": "tree"}, "annotations": [{"result": [
            {"type": "taxonomy", "from_name": "tax", "value": {"taxonomy": [["Family", "Child"], ["Money"]]}}]}]},
        ls_task("line\nbreak", choices()),  # annotated with no label: a negative example
    ]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    examples, skipped = read_label_studio(path)
    assert [(e.text, e.labels) for e in examples] == [
        ("first", ("a", "b")), ("second", ("b",)), ("tree", ("Family", "Family##Child", "Money")), ("line break", ())]
    assert skipped == 1


def test_read_label_studio_controls_and_text_key(tmp_path):
    two = {"result": choices("a")["result"] + choices("z", name="other")["result"]}
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([ls_task("t", two)]), encoding="utf-8")
    with pytest.raises(DataError, match=r"task 1 \(id 1\): several classification controls.*`from_name`"):
        read_label_studio(path)
    assert read_label_studio(path, from_name="other")[0][0].labels == ("z",)
    path.write_text(json.dumps([{"data": {"review": "only field"}, "annotations": [choices("a")]},
                                {"data": {"review": "r", "title": "t"}, "annotations": [choices("a")]}]))
    with pytest.raises(DataError, match="task 2: no 'text' in the task data.*`text_key`"):
        read_label_studio(path)
    assert [e.text for e in read_label_studio(path, text_key="review")[0]] == ["only field", "r"]


def test_read_label_studio_json_min_and_bad_labels(tmp_path):
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"id": 1, "text": "a text", "sentiment": {"choices": ["pos", "neutral"]}},
                                {"id": 2, "text": "one", "sentiment": "neg"},
                                {"id": 3, "text": "unlabelled"}]), encoding="utf-8")
    examples, skipped = read_label_studio(path, from_name="sentiment")
    assert [(e.text, e.labels) for e in examples] == [("a text", ("pos", "neutral")), ("one", ("neg",))]
    assert skipped == 1
    path.write_text(json.dumps([ls_task("t", choices("a,b"))]), encoding="utf-8")
    with pytest.raises(DataError, match=r"task 1 \(id 1\): label 'a,b' contains a comma"):
        read_label_studio(path)
    path.write_text('{"not": "a list"}', encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list of tasks"):
        read_label_studio(path)


def test_read_tasks_is_the_one_reader_of_label_studio_tasks(tmp_path):
    other = {"result": choices("pos", name="sentiment")["result"]}
    tasks = [ls_task("chosen", choices("a", "b")),
             {"id": 8, "data": {"text": "nothing chosen"}, "annotations": [{"result": []}]},  # a negative example
             ls_task("only the other control", other),
             ls_task("   ", choices("a")),
             {"id": 9, "data": {"title": "x", "body": "y"}, "annotations": [choices("a")]},
             ls_task("tab\tand\nbreak", choices("b"))]
    reading = read_tasks(tasks, "posted tasks", from_name="label")
    assert [(e.text, e.labels) for e in reading.examples] == [
        ("chosen", ("a", "b")), ("nothing chosen", ()), ("tab and break", ("b",))]
    assert reading.where == ["task 1 (id 1)", "task 2 (id 8)", "task 6 (id 1)"]
    assert reading.skipped == {"no_annotation": 0, "other_control": 1}
    assert reading.problems == [("task 4 (id 1): empty text", "remove the item or give it a text"),
                                ("task 5 (id 9): no 'text' in the task data", "name the text field with `text_key`")]
    with pytest.raises(DataError, match=r"^posted tasks: task 2 is not a JSON object"):
        read_tasks([tasks[0], "not a task"], "posted tasks")
    # the export-file reader is the same reader: an annotated task without a usable text names the file and task
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    with pytest.raises(DataError, match=r"ls.json: task 4 \(id 1\): empty text \(1 more tasks have no usable "
                                        r"text\) \(remove the item or give it a text\)"):
        read_label_studio(path, from_name="label")
    path.write_text(json.dumps(tasks[:3] + tasks[5:]), encoding="utf-8")
    examples, skipped = read_label_studio(path, from_name="label")
    assert examples == reading.examples and skipped == 1


# ---- label trees ---------------------------------------------------------------------------------------
def taxonomy_task(task_id, text, paths, cancelled=False):
    """One task as Label Studio 1.x exports it (JSON) for a `<Taxonomy name="taxonomy" toName="text">` config."""
    return {
        "id": task_id, "inner_id": task_id, "data": {"text": text}, "meta": {}, "file_upload": "news.json",
        "drafts": [], "predictions": [], "project": 3, "total_annotations": 1, "cancelled_annotations": int(cancelled),
        "total_predictions": 0, "comment_count": 0, "unresolved_comment_count": 0, "last_comment_updated_at": None,
        "updated_by": 1, "comment_authors": [], "created_at": "2024-05-06T08:12:31.402671Z",
        "updated_at": "2024-05-06T08:20:02.118205Z",
        "annotations": [{
            "id": 100 + task_id, "completed_by": 1, "was_cancelled": cancelled, "ground_truth": False,
            "created_at": "2024-05-06T08:20:02.094120Z", "updated_at": "2024-05-06T08:20:02.094151Z",
            "draft_created_at": None, "lead_time": 7.391, "prediction": {}, "result_count": 0, "unique_id": "1a2b",
            "import_id": None, "last_action": None, "task": task_id, "project": 3, "updated_by": 1,
            "parent_prediction": None, "parent_annotation": None, "last_created_by": None,
            "result": [{"value": {"taxonomy": paths}, "id": f"r{task_id}", "from_name": "taxonomy",
                        "to_name": "text", "type": "taxonomy", "origin": "manual"}]}],
    }


def test_label_studio_taxonomy_export_becomes_a_tree_dataset(tmp_path, caplog):
    from labelwise.data.hierarchy import Hierarchy

    tasks = [taxonomy_task(1, "梅西在世界杯决赛上梅开二度", [["体育", "足球"]]),
             taxonomy_task(2, "湖人队今晚迎战勇士，随后公布了新赛季的球票价格", [["体育", "篮球"], ["财经"]]),
             taxonomy_task(3, "央行宣布降准0.25个百分点", [["财经", "货币政策"]]),
             taxonomy_task(4, "足协公布联赛赞助商的合同金额", [["体育", "足球"], ["财经", "企业"], ["体育"]]),
             taxonomy_task(5, "这条被取消了", [["体育"]], cancelled=True)]
    path = tmp_path / "project-3-at-2024-05-06.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False, indent=2), encoding="utf-8")
    with caplog.at_level("INFO", logger="labelwise"):
        examples, skipped = read_label_studio(path)
    assert skipped == 1
    assert [e.labels for e in examples] == [
        ("体育", "体育##足球"), ("体育", "体育##篮球", "财经"), ("财经", "财经##货币政策"),
        ("体育", "体育##足球", "财经", "财经##企业")]  # a parent listed after its child is not repeated
    assert "added 4 parent labels" in caplog.text  # 体育 twice, 财经 twice; the listed ones are not counted
    write_dataset(examples, tmp_path / "ds", [1.0])
    labels = (tmp_path / "ds" / "label.txt").read_text(encoding="utf-8").split()
    assert labels == ["体育", "体育##篮球", "体育##足球", "财经", "财经##企业", "财经##货币政策"]
    ds = load_dataset(tmp_path / "ds", require=("train",))
    tree = Hierarchy.from_labels(ds.labels, "##")
    assert [tree.labels[i] for i in tree.levels[0]] == ["体育", "财经"]
    assert tree.labels[tree.parents[ds.labels.index("财经##货币政策")]] == "财经"
    assert not tree.inconsistent(multi_hot(ds.train, ds.labels)).any()


def test_label_studio_taxonomy_json_min_deeper_paths_and_no_separator(tmp_path):
    path = tmp_path / "min.json"
    path.write_text(json.dumps([
        {"id": 1, "text": "英超第38轮", "taxonomy": {"taxonomy": [["体育", "足球", "英超"]]}},
        {"id": 2, "text": "没有标注"}], ensure_ascii=False), encoding="utf-8")
    examples, skipped = read_label_studio(path)
    assert examples[0].labels == ("体育", "体育##足球", "体育##足球##英超") and skipped == 1
    assert read_label_studio(path, sep="/")[0][0].labels == ("体育", "体育/足球", "体育/足球/英超")
    assert read_label_studio(path, sep="none")[0][0].labels == ("英超",)  # flat: the last element only


def test_doccano_label_paths_bring_their_parents(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [
        {"id": 1, "text": "裁员900余人", "label": ["组织关系##裁员"]},
        {"id": 2, "text": "高管辞职并被立案调查", "label": ["组织关系##辞/离职", "司法行为##立案", "司法行为"]},
        {"id": 3, "text": "flat", "label": ["其他"]}])
    examples = read_doccano(path)
    assert [e.labels for e in examples] == [
        ("组织关系", "组织关系##裁员"), ("组织关系", "组织关系##辞/离职", "司法行为", "司法行为##立案"), ("其他",)]
    assert read_doccano(path, sep=None)[0].labels == ("组织关系##裁员",)  # flat names, nothing added
    write_dataset(examples, tmp_path / "ds", [0.5, 0.5], shuffle=False)
    assert load_dataset(tmp_path / "ds").labels == [
        "其他", "司法行为", "司法行为##立案", "组织关系", "组织关系##裁员", "组织关系##辞/离职"]


@pytest.mark.parametrize("label, message", [
    ("体育##", r"d.jsonl:2: label '体育##' has an empty path element"),
    ("##足球", r"d.jsonl:2: label '##足球' has an empty path element"),
    ("体育####足球", r"d.jsonl:2: label '体育####足球' has an empty path element"),
    ("体育##足球##体育", r"d.jsonl:2: label '体育##足球##体育' names '体育' twice along one path \(a cycle\)"),
])
def test_bad_label_paths_name_file_and_line(tmp_path, label, message):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "ok", "label": ["体育##足球"]}, {"text": "t", "label": [label]}])
    with pytest.raises(DataError, match=message):
        read_doccano(path)


def test_bad_taxonomy_values(tmp_path):
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([taxonomy_task(1, "t", [["体育##足球", "英超"]])], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"task 1 \(id 1\): taxonomy name '体育##足球' contains the separator '##'"):
        read_label_studio(path)
    assert read_label_studio(path, sep="/")[0][0].labels == ("体育##足球", "体育##足球/英超")
    path.write_text(json.dumps([taxonomy_task(1, "t", ["体育", "足球"])], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"task 1 \(id 1\): a taxonomy value must be a list of paths"):
        read_label_studio(path)
