"""The dataset reader: every user mistake is one DataError naming file and line; harmless quirks pass."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelwise.data.dataset import (
    load_dataset,
    multi_hot,
    read_examples,
    read_labels,
    read_texts,
)
from labelwise.errors import DataError, LabelwiseError

LABELS = ["婚后有子女", "支付抚养费", "准予离婚"]


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path / "label.txt", "\n".join(LABELS) + "\n")
    write(tmp_path / "train.txt", "婚生子由原告抚养\t婚后有子女,支付抚养费\n准予离婚。\t准予离婚\n")
    write(tmp_path / "dev.txt", "双方育有一子\t婚后有子女\n")
    return tmp_path


def test_reads_a_dataset_folder(folder):
    ds = load_dataset(folder)
    assert ds.labels == LABELS
    assert [e.labels for e in ds.train] == [("婚后有子女", "支付抚养费"), ("准予离婚",)]
    assert ds.train[1].line == 2 and ds.test is None and ds.data is None
    assert multi_hot(ds.train, ds.labels).tolist() == [[1, 1, 0], [0, 0, 1]]


def test_tolerates_bom_crlf_trailing_blank_lines_and_repeated_label(tmp_path):
    path = write(tmp_path / "t.txt", b"\xef\xbb\xbfa text\t\xe5\x87\x86\xe4\xba\x88\xe7\xa6\xbb\xe5\xa9\x9a,"
                                     b"\xe5\x87\x86\xe4\xba\x88\xe7\xa6\xbb\xe5\xa9\x9a\r\nno label\t\r\n\r\n\n")
    examples = read_examples(path, LABELS)
    assert [(e.text, e.labels) for e in examples] == [("a text", ("准予离婚",)), ("no label", ())]


@pytest.mark.parametrize("content, line, words", [
    ("ok\t准予离婚\nno tab here\n", 2, "no tab"),
    ("ok\t准予离婚\na\tb\t准予离婚\n", 2, "2 tabs"),
    ("\t准予离婚\n", 1, "empty text"),
    ("text\t不存在的标签\n", 1, "not in label.txt"),
    ("text\t准予离婚,,婚后有子女\n", 1, "blank label"),
    ("text\t准予离婚,\n", 1, "blank label"),
    ("ok\t准予离婚\n\nok\t准予离婚\n", 2, "blank line"),
])
def test_each_mistake_names_file_and_line(tmp_path, content, line, words):
    path = write(tmp_path / "train.txt", content)
    with pytest.raises(DataError) as info:
        read_examples(path, LABELS)
    message = str(info.value)
    assert f"train.txt:{line}:" in message and words in message
    assert "\n" not in message


def test_non_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "dev.txt", "fine\t准予离婚\n".encode() + b"caf\xe9\t\n")
    with pytest.raises(DataError, match=r"dev.txt:2: not valid UTF-8.*save the file as UTF-8"):
        read_examples(path, LABELS)


@pytest.mark.parametrize("content, words", [
    ("a\nb\na\n", "duplicate label 'a' (first on line 1)"),
    ("a,b\n", "contains a comma"),
    ("a\n\nb\n", "blank line"),
    ("", "empty"),
])
def test_label_file_mistakes(tmp_path, content, words):
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_labels(write(tmp_path / "label.txt", content))


def test_data_file_takes_text_of_labelled_lines(tmp_path):
    path = write(tmp_path / "data.txt", "first text\nsecond\t准予离婚\n\n")
    assert read_texts(path) == ["first text", "second"]


def test_missing_split_and_folder(tmp_path, folder):
    (folder / "dev.txt").unlink()
    with pytest.raises(DataError, match="dev split not found.*`dev_file`"):
        load_dataset(folder)
    with pytest.raises(LabelwiseError, match="dataset folder not found"):
        load_dataset(tmp_path / "nope")


def test_file_name_overrides(folder):
    (folder / "dev.txt").rename(folder / "valid.tsv")
    assert len(load_dataset(folder, dev_file="valid.tsv").dev) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_give_a_traceback(tmp_path, raw):
    path = write(tmp_path / "fuzz.txt", raw)
    for reader in (lambda: read_examples(path, LABELS), lambda: read_labels(path), lambda: read_texts(path)):
        try:
            reader()
        except DataError as err:
            assert "fuzz.txt" in str(err)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                         blacklist_characters="\t\n\r\x00\ufeff"), min_size=1),
                          st.sets(st.sampled_from(LABELS))), min_size=1, max_size=5))
def test_written_examples_read_back(tmp_path, rows):
    rows = [(text, labels) for text, labels in rows if text.strip()]
    body = "".join(f"{text}\t{','.join(sorted(labels))}\n" for text, labels in rows)
    path = write(tmp_path / "rt.txt", body)
    got = read_examples(path, LABELS)
    assert [(e.text, set(e.labels)) for e in got] == [(t, set(ls)) for t, ls in rows]
