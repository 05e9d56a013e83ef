"""Sparse data selection (labelwise.analysis.sparse) on small divorce and GoEmotions folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import untrained_checkpoint
from labelwise.analysis.similarity import SupportIndex
from labelwise.analysis.sparse import SparseConfig, run_sparse, select_support
from labelwise.data.annotation import read_doccano
from labelwise.data.dataset import (
    Example,
    format_example,
    load_dataset,
    read_examples,
    read_texts,
)
from labelwise.errors import LabelwiseError

ODD = {"zh": ["ＱＷＥＲＴＹ　ｑｗｅｒｔｙ　１２３４５", "@@@@ #### $$$$ %%%% ^^^^", "ZZZZ zzzz XXXX xxxx"],
       "en": ["婚生子杨某甲由原告抚养，双方感情确已破裂。", "@@@@ #### $$$$ %%%% ^^^^", "１２３４５６７８９０"]}


def make_folder(source, folder, lang):
    """Train as given; dev = 12 training texts (well supported) + 3 texts unlike any training text."""
    shutil.copytree(source, folder)
    train = read_examples(folder / "train.txt")
    label = load_dataset(folder).labels[0]
    dev = [train[i] for i in range(0, 120, 10)] + [Example(t, (label,)) for t in ODD[lang]]
    (folder / "dev.txt").write_text("".join(format_example(e.text, e.labels) + "\n" for e in dev), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def zh_case(tmp_path_factory, tiny_zh_encoder, divorce_small):
    tmp = tmp_path_factory.mktemp("sparse_zh")
    folder = make_folder(divorce_small, tmp / "data", "zh")
    return folder, untrained_checkpoint(tiny_zh_encoder, folder, tmp / "ckpt")


@pytest.fixture(scope="module")
def en_case(tmp_path_factory, tiny_en_encoder, goemotions_small):
    tmp = tmp_path_factory.mktemp("sparse_en")
    folder = make_folder(goemotions_small, tmp / "data", "en")
    return folder, untrained_checkpoint(tiny_en_encoder, folder, tmp / "ckpt")


def test_select_support_goes_rank_by_rank_above_the_threshold():
    pool = SupportIndex(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], dtype=np.float32),
                        list("abcde"), [("x",)] * 5)
    queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
    # rank 1 of each query (a, c), then rank 2 (b, d); e is never similar enough
    assert [i for i, _ in select_support(pool, queries, 10, threshold=0.5, ranks=5)] == [0, 2, 1, 3]
    assert [i for i, _ in select_support(pool, queries, 3, threshold=0.5, ranks=5)] == [0, 2, 1]
    assert [i for i, _ in select_support(pool, queries, 10, threshold=0.5, ranks=1)] == [0, 2]
    assert [i for i, _ in select_support(pool, queries, 10, threshold=0.5, ranks=5, exclude={0})] == [2, 1, 3]


@pytest.mark.parametrize("case, lang", [("zh_case", "zh"), ("en_case", "en")])
def test_sparse_finds_the_unsupported_dev_texts_and_duplicates_support(case, lang, request, tmp_path):
    folder, ckpt = request.getfixturevalue(case)
    cfg = SparseConfig(dataset_dir=str(folder), params_path=str(ckpt), output_dir=str(tmp_path),
                       aug_strategy="duplicate", sparse_num=3, support_num=6, support_threshold=-1.0)
    result = run_sparse(cfg)
    sparse = read_examples(tmp_path / "sparse.txt")
    assert {e.text for e in sparse} == set(ODD[lang])
    assert [e.text for e, _ in result.sparse] == [e.text for e in sparse]
    assert result.sparse[-1][1] < result.dev_mean_score  # lowest scores, below the dev mean
    train = read_examples(folder / "train.txt")
    known = {(e.text, e.labels) for e in train}
    support = read_examples(tmp_path / "support.txt")
    assert len(support) == 6 and all((e.text, e.labels) in known for e in support)  # duplicates of train
    combined = read_examples(tmp_path / "train_sparse_aug.txt")
    assert [(e.text, e.labels) for e in combined] == [(e.text, e.labels) for e in train + support]
    assert "written:" in result.summary() and "sparse data: 3 dev examples" in result.summary()


def test_sparse_with_augmentation_rewrites_support(zh_case, tmp_path):
    folder, ckpt = zh_case
    cfg = SparseConfig(dataset_dir=str(folder), params_path=str(ckpt), output_dir=str(tmp_path),
                       aug_strategy="swap", sparse_num=3, support_num=5, support_threshold=-1.0)
    result = run_sparse(cfg)
    support = read_examples(tmp_path / "support.txt")
    originals = {t: labels for t, labels, _ in result.support}
    assert support and len(support) <= 5
    for example in support:
        assert example.text not in originals  # rewritten ...
        source = [t for t in originals if sorted(t) == sorted(example.text)]  # ... by swapping words
        assert source and originals[source[0]] == example.labels


def test_sparse_annotate_picks_unlabelled_texts_for_doccano(zh_case, tmp_path):
    folder, ckpt = zh_case
    cfg = SparseConfig(dataset_dir=str(folder), params_path=str(ckpt), output_dir=str(tmp_path), annotate=True,
                       sparse_num=3, support_num=4, support_threshold=-1.0)
    run_sparse(cfg)
    texts = read_texts(tmp_path / "support.txt")
    assert len(texts) == 4 and set(texts) <= set(read_texts(folder / "data.txt"))
    assert [e.text for e in read_doccano(tmp_path / "support.jsonl")] == texts
    assert not (tmp_path / "train_sparse_aug.txt").exists()
    records = [json.loads(line) for line in (tmp_path / "support.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["label"] == [] for r in records)


def test_sparse_refuses_to_overwrite_and_checks_flags(zh_case, tmp_path):
    folder, ckpt = zh_case
    (tmp_path / "sparse.txt").write_text("precious\t\n", encoding="utf-8")
    cfg = SparseConfig(dataset_dir=str(folder), params_path=str(ckpt), output_dir=str(tmp_path))
    with pytest.raises(LabelwiseError, match="sparse.txt: already exists"):
        run_sparse(cfg)
    assert (tmp_path / "sparse.txt").read_text(encoding="utf-8") == "precious\t\n"
    with pytest.raises(LabelwiseError, match="dev.txt: this output is also an input"):
        run_sparse(SparseConfig(dataset_dir=str(folder), params_path=str(ckpt), sparse_file="dev.txt", overwrite=True))
    with pytest.raises(LabelwiseError, match="`support_threshold`"):
        run_sparse(SparseConfig(dataset_dir=str(folder), support_threshold=3))
