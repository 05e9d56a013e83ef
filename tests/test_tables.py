"""Data in the files people have: CSV / TSV, JSON Lines, Parquet, one 0/1 column per label, a saved Hugging Face
dataset. Each trains, evaluates and predicts through the CLI; a bad row is one line naming file, row and column."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from labelwise.cli.main import main
from labelwise.data.dataset import load_dataset, read_examples
from labelwise.errors import DataError

DIVORCE = Path(__file__).resolve().parents[1] / "data" / "divorce"
FAST = ["--epochs", "1", "--max_seq_length", "32", "--batch_size", "16", "--no_baseline", "--learning_rate", "1e-3"]


def rows_of(folder: Path, split: str) -> list[tuple[str, list[str]]]:
    out = []
    for line in (folder / f"{split}.txt").read_text(encoding="utf-8").splitlines():
        text, _, labels = line.partition("\t")
        out.append((text, [x for x in labels.split(",") if x]))
    return out


def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make(kind: str, source: Path, folder: Path) -> Path:
    """``source`` (a text-format folder) written as ``kind``; label.txt kept except where a format carries labels."""
    folder.mkdir()
    labels = source.joinpath("label.txt").read_text(encoding="utf-8").splitlines()
    for split in ("train", "dev"):
        rows = rows_of(source, split)
        if kind == "csv":
            write_csv(folder / f"{split}.csv", ["id", "text", "labels"], [[i, t, ",".join(ls)] for i, (t, ls) in
                                                                          enumerate(rows)])
        elif kind == "tsv":
            write_csv(folder / f"{split}.tsv", ["sentence", "label"], [[t, json.dumps(ls, ensure_ascii=False)]
                                                                        for t, ls in rows], delimiter="\t")
        elif kind == "jsonl":
            (folder / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "labels": ls}, ensure_ascii=False)
                                                           + "\n" for t, ls in rows), encoding="utf-8")
        elif kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"text": [t for t, _ in rows], "labels": [ls for _, ls in rows]}),
                           folder / f"{split}.parquet")
        elif kind == "onehot":  # the toxic-comment shape: no label.txt, one 0/1 column per label
            write_csv(folder / f"{split}.csv", ["id", "comment_text", *labels],
                      [[i, t, *(int(label in ls) for label in labels)] for i, (t, ls) in enumerate(rows)])
    if kind in ("csv", "tsv", "jsonl", "parquet"):
        (folder / "label.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return folder


def make_hf(source: Path, folder: Path) -> Path:
    datasets = pytest.importorskip("datasets")
    labels = source.joinpath("label.txt").read_text(encoding="utf-8").splitlines()
    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=labels))})
    splits = {}
    for split, name in (("train", "train"), ("dev", "validation")):
        rows = rows_of(source, split)
        splits[name] = datasets.Dataset.from_dict({"text": [t for t, _ in rows],
                                                   "labels": [[labels.index(x) for x in ls] for _, ls in rows]},
                                                  features=features)
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet", "onehot", "hf"])
def test_each_format_trains_evaluates_and_predicts_through_the_cli(kind, tiny_zh_encoder, divorce_small, tmp_path,
                                                                   capsys):
    data = make_hf(divorce_small, tmp_path / "data") if kind == "hf" else make(kind, divorce_small, tmp_path / "data")
    want = load_dataset(divorce_small)
    got = load_dataset(data)
    assert [(e.text, set(e.labels)) for e in got.train] == [(e.text, set(e.labels)) for e in want.train]
    assert len(got.dev) == len(want.dev)
    if kind == "onehot":
        assert got.labels == want.labels  # the columns, in the table's order
    else:
        assert set(got.labels) == set(want.labels)
    save = tmp_path / "ckpt"
    assert main(["train", "--dataset_dir", str(data), "--save_dir", str(save), "--model_name", str(tiny_zh_encoder),
                 *FAST]) == 0, capsys.readouterr().err
    meta = json.loads((save / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["labels"] == got.labels
    capsys.readouterr()
    assert main(["evaluate", "--dataset_dir", str(data), "--params_path", str(save), "--bad_case_file",
                 str(tmp_path / "bad.txt"), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size"] == len(want.dev)
    if kind == "hf":
        predict = ["--dataset_dir", str(data), "--hf_split", "validation"]
    else:
        texts = tmp_path / "texts.csv"
        write_csv(texts, ["text"], [[t] for t, _ in rows_of(divorce_small, "dev")[:5]])
        predict = ["--data_file", str(texts)]
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--params_path", str(save), *predict, "--output_file", str(out), "--with_scores"]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == (len(want.dev) if kind == "hf" else 5)
    assert all(set(row["labels"]) <= set(got.labels) and len(row["scores"]) == len(row["labels"]) for row in lines)


def test_without_label_txt_the_labels_come_from_the_data_most_frequent_first(divorce_small, tmp_path, caplog):
    data = make("csv", divorce_small, tmp_path / "data")
    (data / "label.txt").unlink()
    with caplog.at_level("INFO", logger="labelwise"):
        ds = load_dataset(data)
    counts = {label: sum(label in e.labels for e in ds.train + ds.dev) for label in ds.labels}
    assert list(counts.values()) == sorted(counts.values(), reverse=True)
    assert "no label.txt" in caplog.text and "most frequent first" in caplog.text


def test_evaluating_a_table_without_label_txt_uses_the_models_labels(tiny_zh_checkpoint, divorce_small, tmp_path,
                                                                     capsys):
    data = make("jsonl", divorce_small, tmp_path / "data")
    (data / "label.txt").unlink()
    assert main(["evaluate", "--dataset_dir", str(data), "--params_path", str(tiny_zh_checkpoint),
                 "--bad_case_file", str(tmp_path / "bad.txt")]) == 0, capsys.readouterr().err
    rows = [json.dumps({"text": "x", "labels": ["不是一个标签"]}, ensure_ascii=False)]
    (data / "dev.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["evaluate", "--dataset_dir", str(data), "--params_path", str(tiny_zh_checkpoint)]) == 2
    err = capsys.readouterr().err  # never converted silently to another label set
    assert f"{data / 'dev.jsonl'}:1: label '不是一个标签' is not in label.txt" in err


@pytest.mark.parametrize("name,content,words", [
    ("train.csv", "text,labels\nok,a\n,a\n", "train.csv:3: column 'text': the text is empty"),
    ("train.csv", 'text,labels\nok,a\n"two,a,b\n', "train.csv:3: not CSV: unexpected end of data"),
    ("train.csv", "text,labels\nok,a\nbad,a,b,c\n", "train.csv:3: 4 cells, but the header names 2 columns"),
    ("train.csv", "words,labels\nok,a\n", "no text column among words, labels"),
    ("train.csv", "text,labels\nok,\"[1, 2\"\n", "train.csv:2: column 'labels'"),
    ("train.csv", "text,a,b\nok,1,2\n", "no labels column among text, a, b"),
    ("train.jsonl", '{"text": "ok", "labels": ["a"]}\n[1]\n', "train.jsonl:2: a JSON list, not an object"),
    ("train.jsonl", '{"text": "ok", "labels": ["a"]}\n{"text": 5, "labels": []}\n',
     "train.jsonl:2: column 'text': the text is a int"),
    ("train.jsonl", '{"text": "ok", "labels": ["a", 3]}\n', "train.jsonl:1: column 'labels': '3' is not a label name"),
    ("train.jsonl", '{"text": "ok", "labels": ["a"]}\n{"text": "x", "labels": ["z"]}\n',
     "train.jsonl:2: label 'z' is not in label.txt"),
])
def test_a_bad_row_is_one_line_naming_file_row_and_column(tmp_path, name, content, words):
    (tmp_path / "label.txt").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_examples(tmp_path / name, ["a", "b"])
    message = str(caught.value)
    assert words in message and "\n" not in message and str(tmp_path) in message


def test_a_one_hot_cell_that_is_not_0_or_1_names_the_row(tmp_path):
    write_csv(tmp_path / "train.csv", ["text", "a", "b"], [["ok", 1, 0], ["bad", 1, 2]])
    with pytest.raises(DataError, match=r"train.csv:3: column 'b' holds '2', not 0 or 1"):
        read_examples(tmp_path / "train.csv", columns=None)


def test_explicit_columns_and_separators(tmp_path):
    from labelwise.data.tables import TableColumns

    write_csv(tmp_path / "train.csv", ["body", "tags", "other"], [["one", "a|b", "x"], ["two", "", "y"]])
    columns = TableColumns(text_column="body", label_column="tags", label_sep="|")
    assert [(e.text, e.labels) for e in read_examples(tmp_path / "train.csv", columns=columns)] == \
        [("one", ("a", "b")), ("two", ())]
    with pytest.raises(DataError, match=r"no column 'nope' \(`text_column`\); the columns are body, tags, other"):
        read_examples(tmp_path / "train.csv", columns=TableColumns(text_column="nope"))


def test_a_paddlenlp_file_named_tsv_is_still_the_text_format(tmp_path):
    (tmp_path / "dev.tsv").write_text("婚生子\t婚后有子女\n", encoding="utf-8")
    assert read_examples(tmp_path / "dev.tsv", ["婚后有子女"])[0].labels == ("婚后有子女",)


def test_index_and_select_read_tables_too(tiny_zh_encoder, tiny_zh_checkpoint, divorce_small, tmp_path, capsys):
    data = make("jsonl", divorce_small, tmp_path / "data")
    lines = DIVORCE.joinpath("dev.txt").read_text(encoding="utf-8").splitlines()[200:240]
    pool = [line.split("\t")[0] for line in lines]
    write_csv(data / "data.csv", ["id", "content"], [[i, t] for i, t in enumerate(pool)])
    assert main(["index", "--params_path", str(tiny_zh_encoder), "--dataset_dir", str(data), "--index_dir",
                 str(tmp_path / "index"), "--vector_db", "file"]) == 0, capsys.readouterr().err
    assert main(["select", "--params_path", str(tiny_zh_checkpoint), "--dataset_dir", str(data), "--num", "5",
                 "--output_file", str(tmp_path / "next.jsonl")]) == 0, capsys.readouterr().err
    chosen = [json.loads(line)["text"] for line in (tmp_path / "next.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(chosen) == 5 and set(chosen) <= set(pool)


def test_the_data_tools_read_tables_with_the_column_flags(tiny_zh_checkpoint, divorce_small, tmp_path, capsys):
    """data augment / sparse / dirty on a CSV whose columns have unusual names, given with the column flags."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "label.txt").write_text((divorce_small / "label.txt").read_text(encoding="utf-8"), encoding="utf-8")
    for split in ("train", "dev"):
        write_csv(data / f"{split}.csv", ["body", "tags"], [[t, "|".join(ls)] for t, ls in rows_of(divorce_small,
                                                                                                   split)])
    columns = ["--text_column", "body", "--label_column", "tags", "--label_sep", "|"]
    train = rows_of(divorce_small, "train")
    aug = tmp_path / "aug.txt"
    assert main(["data", "augment", "--train_path", str(data / "train.csv"), "--aug_path", str(aug),
                 "--aug_strategy", "delete", *columns]) == 0, capsys.readouterr().err
    written = read_examples(aug)
    assert written and {e.labels for e in written} <= {tuple(ls) for _, ls in train}
    assert main(["data", "sparse", "--dataset_dir", str(data), "--params_path", str(tiny_zh_checkpoint),
                 "--train_file", "train.csv", "--dev_file", "dev.csv", "--sparse_num", "5", "--support_num", "5",
                 "--output_dir", str(tmp_path / "sparse"), *columns]) == 0, capsys.readouterr().err
    assert len((tmp_path / "sparse" / "sparse.txt").read_text(encoding="utf-8").splitlines()) == 5
    assert main(["data", "dirty", "--dataset_dir", str(data), "--params_path", str(tiny_zh_checkpoint),
                 "--train_file", "train.csv", "--dirty_num", "7", "--dirty_file", str(tmp_path / "dirty.txt"),
                 "--rest_file", str(tmp_path / "rest.txt"), *columns]) == 0, capsys.readouterr().err
    dirty, rest = read_examples(tmp_path / "dirty.txt"), read_examples(tmp_path / "rest.txt")
    assert len(dirty) == 7 and len(dirty) + len(rest) == len(train)
    assert main(["data", "augment", "--train_path", str(data / "train.csv"), "--aug_path", str(tmp_path / "x.txt"),
                 "--text_column", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_hf_dataset_loads_with_datasets_once_and_trains_evaluates_predicts(tiny_zh_encoder, divorce_small, tmp_path,
                                                                           capsys, monkeypatch, caplog):
    """--hf_dataset takes what datasets.load_dataset takes (here a local folder of Parquet splits, the shape of a
    hub dataset's files); it is saved once under $LABELWISE_CACHE and the saved copy is reused after."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("LABELWISE_CACHE", str(tmp_path / "cache"))
    files = make("parquet", divorce_small, tmp_path / "files")
    (files / "dev.parquet").rename(files / "validation.parquet")
    (files / "label.txt").unlink()  # a hub dataset has none: the labels come from the data, most frequent first
    save = tmp_path / "ckpt"
    assert main(["train", "--hf_dataset", str(files), "--save_dir", str(save), "--model_name", str(tiny_zh_encoder),
                 *FAST]) == 0, capsys.readouterr().err
    saved = list((tmp_path / "cache" / "datasets").iterdir())
    assert len(saved) == 1 and (saved[0] / "dataset_dict.json").is_file()
    want = load_dataset(divorce_small)
    meta = json.loads((save / "labelwise.json").read_text(encoding="utf-8"))
    assert set(meta["labels"]) == {label for e in want.train for label in e.labels}
    stamp = (saved[0] / "dataset_dict.json").stat().st_mtime_ns
    capsys.readouterr()
    with caplog.at_level("INFO", logger="labelwise"):
        assert main(["evaluate", "--hf_dataset", str(files), "--params_path", str(save), "--bad_case_file",
                     str(tmp_path / "bad.txt"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == len(want.dev)
    assert "the copy saved in" in caplog.text and (saved[0] / "dataset_dict.json").stat().st_mtime_ns == stamp
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--params_path", str(save), "--hf_dataset", str(files), "--hf_split", "validation",
                 "--output_file", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(want.dev)


def test_hf_dataset_errors_are_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("LABELWISE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # as on a machine without internet
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", "--hf_dataset", "no-such-user/no-such-dataset", "--save_dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no-such-user/no-such-dataset" in err and "save_to_disk" in err, err
    assert not (tmp_path / "cache" / "datasets").exists() or not any((tmp_path / "cache" / "datasets").iterdir())
    assert main(["train", "--hf_dataset", "x", "--dataset_dir", str(tmp_path), "--save_dir", str(tmp_path / "c")]) == 2
    assert "both given" in capsys.readouterr().err
    assert main(["train", "--save_dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "--dataset_dir DIR" in err and "--hf_dataset NAME" in err and err.count("\n") == 1
