"""labelwise select: strategies, pool handling, annotation tasks with pre-annotations, merging back."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from labelwise.cli.main import main
from labelwise.data.annotation import read_doccano, read_label_studio
from labelwise.data.dataset import Example, load_dataset, read_examples
from labelwise.data.labelstudio import choices_control, prediction_for
from labelwise.errors import DataError, LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.select.pick import read_pool, select_next
from labelwise.select.strategies import by_label, cardinality_gap, diverse_pick, rank, uncertainty
from labelwise.select.tasks import label_studio_tasks, merge_into_train, write_tasks


def test_uncertainty_is_highest_at_a_threshold():
    probs = np.array([[0.50, 0.01], [0.95, 0.02], [0.30, 0.29], [0.05, 0.01]])
    scores = uncertainty(probs, np.array([0.5, 0.3]))
    assert np.argmax(scores) == 0 or np.argmax(scores) == 2  # a label exactly at / next to its threshold
    assert scores[0] > scores[1] and scores[0] > scores[3] and scores[2] > scores[3]
    assert np.all((scores >= 0) & (scores <= 1.1))


def test_cardinality_gap_counts_labels_against_the_data():
    probs = np.array([[0.9, 0.8, 0.7], [0.9, 0.1, 0.1], [0.1, 0.1, 0.1]])
    gap = cardinality_gap(probs, 0.5, mean_labels=1.0)
    assert gap[0] > gap[2] > gap[1]  # three labels is farther from 1 than none


def test_diversity_does_not_pick_near_duplicates():
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0, 0.0]) + 0.01 * rng.standard_normal((10, 3))  # ten near-duplicates
    b = np.array([0.0, 1.0, 0.0]) + 0.01 * rng.standard_normal((10, 3))
    vectors = np.vstack([a, b])
    scores = np.r_[np.linspace(1.0, 0.9, 10), np.linspace(0.8, 0.7, 10)]  # cluster a is more uncertain
    plain = np.argsort(-scores)[:3]
    assert set(plain) <= set(range(10))  # plain uncertainty spends every pick on duplicates
    picked = diverse_pick(vectors, 3, scores)  # among the 15 most uncertain: 10 of a, 5 of b
    assert picked[0] == 0 and 10 <= picked[1] < 15 and len(set(picked)) == 3
    cold = diverse_pick(vectors, 2)
    assert len({int(i) // 10 for i in cold}) == 2


def test_rank_random_is_seeded_and_auto_falls_back_to_diversity():
    first, _ = rank("random", 5, probs=np.zeros((30, 2)), rng=np.random.default_rng(1))
    again, _ = rank("random", 5, probs=np.zeros((30, 2)), rng=np.random.default_rng(1))
    assert list(first) == list(again) and len(set(first)) == 5
    vectors = np.eye(4)
    chosen, _ = rank("auto", 4, vectors=vectors)
    assert sorted(chosen) == [0, 1, 2, 3]


@pytest.fixture()
def dataset(divorce_small, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(divorce_small, folder)
    return folder


def _pool(dataset, tmp_path, extra: list[str]) -> list[str]:
    ds = load_dataset(dataset)
    texts = [e.text for e in ds.train[:3]] + [e.text for e in ds.dev[:2]] + extra + extra[:2]
    (tmp_path / "pool.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    return read_pool(tmp_path / "pool.txt")


NEW = ["原告与被告于2010年登记结婚，婚后育有一子。", "被告每月支付抚养费八百元。", "双方自愿离婚。",
       "婚后共同财产房屋一套归原告所有。", "被告对原告有家庭暴力行为。", "原告要求被告返还彩礼。"]


def test_select_skips_labelled_and_repeated_texts_and_writes_pre_annotations(tiny_zh_checkpoint, dataset, tmp_path):
    pool = _pool(dataset, tmp_path, NEW)
    clf = Classifier.load(tiny_zh_checkpoint)
    sel = select_next(pool, 4, classifier=clf, dataset=load_dataset(dataset))
    assert (sel.pool_size, sel.already_labelled, sel.duplicates) == (len(pool), 5, 2)
    assert len(sel.texts) == 4 and set(sel.texts) <= set(NEW) and len(set(sel.texts)) == 4
    assert sel.strategy == "auto: each label's most doubtful texts"
    probs = clf.predict_proba(sel.texts)
    np.testing.assert_allclose(sel.probabilities, probs, atol=1e-6)
    new = list(dict.fromkeys(NEW))  # the pool's new texts, in pool order, as the strategy saw them
    chosen, scores = rank("auto", 4, probs=clf.predict_proba(new), thresholds=clf.thresholds)
    assert sel.texts == [new[i] for i in chosen] and sel.scores == [round(float(scores[i]), 4) for i in chosen]

    path = write_tasks(sel, tmp_path / "next.jsonl", "doccano")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row, decided in zip(rows, clf.predict(sel.texts)):
        assert row["label"] == decided.labels  # the model's guess, pre-filled
    assert [e.text for e in read_doccano(path)] == sel.texts  # doccano's own format reads back

    ls = write_tasks(sel, tmp_path / "next.json", "labelstudio")
    tasks = json.loads(ls.read_text(encoding="utf-8"))
    assert [t["data"]["text"] for t in tasks] == sel.texts
    control = choices_control(clf.labels)
    for task, decided, row in zip(tasks, clf.predict(sel.texts), probs):
        (prediction,) = task["predictions"]
        assert prediction["model_version"].startswith("labelwise")
        # the score is the least certain label decision: p for a chosen label, 1 - p for one left out
        certainty = [p if label in decided.labels else 1 - p for label, p in zip(clf.labels, row)]
        assert prediction["score"] == pytest.approx(min(certainty), abs=1e-4)
        # one builder for Label Studio predictions: the service's ML backend sends the very same dict
        assert prediction == prediction_for(row, decided.labels, clf.labels, control, sel.model_version)
        choices = prediction["result"][0]["value"]["choices"] if prediction["result"] else []
        assert choices == decided.labels
        if choices:
            assert prediction["result"][0]["from_name"] == "label" and prediction["result"][0]["to_name"] == "text"
    with pytest.raises(LabelwiseError):
        write_tasks(sel, ls, "labelstudio")  # exists: not overwritten without overwrite


def test_cold_start_spreads_over_the_encoder_space(tiny_zh_encoder, dataset, tmp_path):
    pool = _pool(dataset, tmp_path, NEW)
    sel = select_next(pool, 3, dataset=load_dataset(dataset), encoder=str(tiny_zh_encoder))
    assert sel.strategy == "diversity (cold start)" and len(set(sel.texts)) == 3 and sel.probabilities is None
    tasks = label_studio_tasks(sel)
    assert all("predictions" not in t for t in tasks)  # nothing to pre-annotate without a model
    with pytest.raises(LabelwiseError, match="needs a model"):
        select_next(pool, 3, strategy="uncertainty", dataset=load_dataset(dataset), encoder=str(tiny_zh_encoder))


def test_bad_pools(tiny_zh_checkpoint, dataset, tmp_path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_pool(tmp_path / "empty.txt")
    (tmp_path / "gbk.txt").write_bytes("婚后育有一子".encode("gbk"))
    with pytest.raises(DataError, match="gbk.txt:1: .*GBK"):
        read_pool(tmp_path / "gbk.txt")
    (tmp_path / "latin.txt").write_bytes(b"ok\n\xff\xfe\n")  # not UTF-8 and not GBK either: no GBK guess
    with pytest.raises(DataError) as err:
        read_pool(tmp_path / "latin.txt")
    assert "latin.txt:2: not valid UTF-8" in str(err.value) and "GBK" not in str(err.value)
    clf = Classifier.load(tiny_zh_checkpoint)
    ds = load_dataset(dataset)
    with pytest.raises(LabelwiseError, match="nothing to select"):
        select_next([e.text for e in ds.train[:4]], 2, classifier=clf, dataset=ds)
    sel = select_next(NEW[:2], 50, classifier=clf, dataset=ds)  # more asked than the pool has: all of it
    assert sorted(sel.texts) == sorted(NEW[:2])
    other = dataset.parent / "other"
    other.mkdir()
    (other / "label.txt").write_text("甲\n乙\n", encoding="utf-8")
    (other / "train.txt").write_text("一个文本\t甲\n", encoding="utf-8")
    (other / "dev.txt").write_text("另一个文本\t乙\n", encoding="utf-8")
    with pytest.raises(LabelwiseError, match="labels differ"):
        select_next(NEW, 2, classifier=clf, dataset=load_dataset(other))


def test_merge_adds_new_examples_and_loses_nothing(dataset, tmp_path):
    ds = load_dataset(dataset)
    dev_before = (dataset / "dev.txt").read_bytes()
    train_before = (dataset / "train.txt").read_text(encoding="utf-8")
    label = ds.labels[0]
    other = next(l for l in ds.labels if l not in ds.train[0].labels)
    annotated = [Example(NEW[0], (label,)), Example(NEW[1], ()), Example(NEW[0], (label,)),
                 Example(ds.train[0].text, (other,)), Example(ds.dev[0].text, (label,))]
    report = merge_into_train(annotated, dataset, tmp_path / "annotated.jsonl")
    assert (report.added, report.repeats, report.already_in_train, report.already_in_dev) == (2, 1, 1, 1)
    assert len(report.conflicts) == 1 and "keeps its labels" in report.summary()
    after = read_examples(dataset / "train.txt", ds.labels)
    assert (dataset / "train.txt").read_text(encoding="utf-8").startswith(train_before)  # nothing lost
    assert [(e.text, e.labels) for e in after[-2:]] == [(NEW[0], (label,)), (NEW[1], ())]
    assert after[0].labels == ds.train[0].labels  # the old labels kept on a conflict
    assert (dataset / "dev.txt").read_bytes() == dev_before
    again = merge_into_train(annotated, dataset, tmp_path / "annotated.jsonl")
    assert again.added == 0  # merging twice adds nothing


def test_merge_refuses_unknown_labels_in_one_line(dataset, tmp_path):
    export = tmp_path / "ls.json"
    export.write_text(json.dumps([{"data": {"text": NEW[2]}, "annotations": [{"result": [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["没有这个标签" * 30]}}]}]}]),
        encoding="utf-8")
    examples, _ = read_label_studio(export)
    before = (dataset / "train.txt").read_bytes()
    with pytest.raises(DataError) as err:
        merge_into_train(examples, dataset, export)
    message = str(err.value)
    assert "label.txt" in message and "\n" not in message and len(message) < 400
    assert (dataset / "train.txt").read_bytes() == before


def test_merge_keeps_the_file_as_it_was_and_skips_test_texts(dataset, tmp_path):
    ds = load_dataset(dataset)
    lines = (dataset / "train.txt").read_text(encoding="utf-8").splitlines()[:3]
    raw = ("\ufeff" + "\r\n".join(lines) + "\r\n\r\n  \r\n").encode("utf-8")  # BOM, CRLF, trailing blank lines
    (dataset / "train.txt").write_bytes(raw)
    (dataset / "test.txt").write_text(f"{NEW[3]}\t{ds.labels[1]}\n", encoding="utf-8")
    test_before = (dataset / "test.txt").read_bytes()
    report = merge_into_train([Example(NEW[3], (ds.labels[0],)), Example(NEW[4], (ds.labels[2],)),
                               Example(NEW[5], ()), Example(NEW[4], ())], dataset, tmp_path / "export.jsonl")
    assert (report.added, report.already_in_test, report.unlabelled, report.first_line) == (2, 1, 1, 4)
    assert (report.repeats, report.repeat_conflicts) == (1, 1)  # the first annotation of NEW[4] counts
    summary = report.summary()
    assert "lines 4-5" in summary and "without any label: 1" in summary and "different labels: 1" in summary
    after = (dataset / "train.txt").read_bytes()
    kept = ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")
    assert after == kept + f"{NEW[4]}\t{ds.labels[2]}\r\n{NEW[5]}\t\r\n".encode()
    assert [e.text for e in read_examples(dataset / "train.txt", ds.labels)][-2:] == NEW[4:6]
    assert (dataset / "test.txt").read_bytes() == test_before


def test_merge_reads_the_dataset_with_its_own_separator(tmp_path):
    data = tmp_path / "slash"
    data.mkdir()
    (data / "label.txt").write_text("体育\n体育/足球\n财经\n", encoding="utf-8")
    (data / "train.txt").write_text("梅西进球\t体育/足球\n央行降准\t财经\n", encoding="utf-8")  # a leaf alone
    (data / "dev.txt").write_text("湖人夺冠\t体育\n", encoding="utf-8")
    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in [
        {"id": 1, "text": "梅西进球", "label": ["体育/足球"]},  # as in train.txt: its parent is implied there
        {"id": 2, "text": "C罗转会", "label": ["体育/足球"]},
        {"id": 3, "text": "股市大涨", "label": ["财经"]}]), encoding="utf-8")
    examples = read_doccano(export, sep="/")
    assert examples[1].labels == ("体育", "体育/足球")
    before = (data / "train.txt").read_bytes()
    report = merge_into_train(examples, data, export, hierarchy_sep="/")
    assert (report.added, report.already_in_train, report.conflicts) == (2, 1, [])
    after = (data / "train.txt").read_bytes()
    assert after == before + "C罗转会\t体育,体育/足球\n股市大涨\t财经\n".encode()
    ds = load_dataset(data, hierarchy_sep="/")
    assert [(e.text, e.labels) for e in ds.train[-2:]] == [("C罗转会", ("体育", "体育/足球")), ("股市大涨", ("财经",))]
    # examples built in Python with a leaf alone get their parents from the dataset's tree
    report = merge_into_train([Example("国足出线", ("体育/足球",))], data, "python", hierarchy_sep="/")
    assert report.added == 1 and (data / "train.txt").read_bytes() == after + "国足出线\t体育,体育/足球\n".encode()
    # read as flat names ("##", the old behaviour), the train line's missing parent looked like a conflict
    flat = merge_into_train(examples, data, export)
    assert len(flat.conflicts) == 1 and flat.added == 0


# ---- the command line: labelwise select, and its bad input (one line each, naming the file) ---------------------
def _select(*args: str) -> int:
    return main(["-q", "select", *args])


def test_select_command_cold_start_and_summary(tiny_zh_encoder, dataset, tmp_path, capsys):
    _pool(dataset, tmp_path, NEW)
    out = tmp_path / "next.json"
    assert _select("--dataset_dir", str(dataset), "--pool_file", str(tmp_path / "pool.txt"), "--num", "3",
                   "--model_name", str(tiny_zh_encoder), "--output_file", str(out), "--format", "labelstudio") == 0
    printed = capsys.readouterr().out
    assert "3 texts selected (diversity (cold start)) from a pool of 13: 5 already in the dataset and 2 repeats" \
        in printed
    assert f"-> {out}" in printed and f"labelwise labelstudio --labelstudio_file export.json --merge_into {dataset}" \
        in printed
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert len(tasks) == 3 and {t["data"]["text"] for t in tasks} <= set(NEW)
    assert all("predictions" not in t for t in tasks)
    # no --pool_file: the dataset folder's data.txt; no dataset either: nothing to choose from
    assert _select("--dataset_dir", str(dataset), "--num", "2", "--model_name", str(tiny_zh_encoder),
                   "--output_file", str(tmp_path / "from_data.jsonl")) == 0
    data = (dataset / "data.txt").read_text(encoding="utf-8").split()
    assert {json.loads(line)["text"] for line in (tmp_path / "from_data.jsonl").read_text().splitlines()} <= set(data)
    capsys.readouterr()
    assert _select("--output_file", str(tmp_path / "x.jsonl")) == 2
    assert capsys.readouterr().err.strip() == ("labelwise: error: no pool to choose from: pass --pool_file (one text "
                                               "a line), or --dataset_dir to use its data.txt")


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_select_command_bad_pools(untrained_zh_checkpoint, dataset, tmp_path, capsys):
    ckpt, out = str(untrained_zh_checkpoint), str(tmp_path / "next.jsonl")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    assert _select("--params_path", ckpt, "--dataset_dir", str(dataset), "--pool_file", str(empty),
                   "--output_file", out) == 2
    assert _error(capsys) == f"labelwise: error: {empty}: the pool is empty (put the texts to choose from in it, one a line)"

    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("婚后育有一子\n双方自愿离婚\n".encode() + "被告每月支付抚养费".encode("gbk") + b"\n")
    assert _select("--params_path", ckpt, "--pool_file", str(gbk), "--output_file", out) == 2
    message = _error(capsys)
    assert message.startswith(f"labelwise: error: {gbk}:3: not valid UTF-8") and "GBK" in message
    assert "iconv -f GB18030 -t UTF-8 gbk.txt" in message

    labelled = tmp_path / "labelled.txt"
    labelled.write_text("".join(line.split("\t")[0] + "\n" for line in
                                (dataset / "train.txt").read_text(encoding="utf-8").splitlines()[:4]), encoding="utf-8")
    assert _select("--params_path", ckpt, "--dataset_dir", str(dataset), "--pool_file", str(labelled),
                   "--output_file", out) == 2
    assert _error(capsys).startswith(f"labelwise: error: {labelled}: nothing to select: all 4 texts")

    assert _select("--params_path", ckpt, "--dataset_dir", str(dataset), "--pool_file", str(labelled),
                   "--num", "0") == 2
    assert _error(capsys) == "labelwise: error: --num must be at least 1, got 0"
    assert not (tmp_path / "next.jsonl").exists()


def test_select_command_takes_the_whole_pool_when_asked_for_more(untrained_zh_checkpoint, dataset, tmp_path, capsys):
    (tmp_path / "pool.txt").write_text("\n".join(NEW[:2]) + "\n", encoding="utf-8")
    out = tmp_path / "next.jsonl"
    assert _select("--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(dataset), "--pool_file",
                   str(tmp_path / "pool.txt"), "--num", "50", "--output_file", str(out)) == 0
    printed = capsys.readouterr().out
    assert "50 were asked for, but the pool has only 2 new texts, so all of them were taken" in printed
    assert sorted(json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()) == sorted(NEW[:2])
    assert _select("--params_path", str(untrained_zh_checkpoint), "--pool_file", str(tmp_path / "pool.txt"),
                   "--output_file", str(out)) == 2  # never over an existing file without --overwrite
    assert "already exists" in _error(capsys)


def test_select_command_refuses_a_checkpoint_of_other_labels(untrained_zh_checkpoint, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "label.txt").write_text("甲\n乙\n", encoding="utf-8")
    (other / "train.txt").write_text("一个文本\t甲\n", encoding="utf-8")
    (tmp_path / "pool.txt").write_text("\n".join(NEW) + "\n", encoding="utf-8")
    assert _select("--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(other), "--pool_file",
                   str(tmp_path / "pool.txt"), "--output_file", str(tmp_path / "next.jsonl")) == 2
    message = _error(capsys)
    assert message.startswith(f"labelwise: error: {other / 'label.txt'}: the labels differ from those of the model in "
                              f"{untrained_zh_checkpoint}") and "only in the file: '甲', '乙'" in message
    assert not (tmp_path / "next.jsonl").exists()


def test_auto_gives_every_label_its_most_doubtful_text_in_turn():
    # label 0's texts are all far from its threshold but for row 3; label 1's nearest is row 1, then row 2
    probs = np.array([[0.99, 0.01], [0.98, 0.45], [0.97, 0.40], [0.55, 0.02], [0.01, 0.03]])
    thresholds = np.array([0.5, 0.5])
    assert by_label(probs, thresholds, 3).tolist() == [3, 1, 2]
    chosen, scores = rank("auto", 2, probs=probs, thresholds=thresholds)
    assert chosen.tolist() == [3, 1]
    assert sorted(rank("uncertainty", 2, probs=probs, thresholds=thresholds)[0].tolist()) == [1, 3]
    # with a rare label whose texts are all far below its threshold, auto still gives it a pick; uncertainty does not
    probs = np.array([[0.51, 0.01], [0.49, 0.02], [0.52, 0.03], [0.90, 0.10]])
    assert 3 in rank("auto", 2, probs=probs, thresholds=thresholds)[0].tolist()
    assert 3 not in rank("uncertainty", 2, probs=probs, thresholds=thresholds)[0].tolist()
