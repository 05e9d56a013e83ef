"""A retrieval index whose vectors live in Milvus, against real Milvus Lite databases under tmp_path: the default
store with the milvus extra (a database inside the index folder) and `--vector_db PATH.db` (a database elsewhere,
the code path of a Milvus server). Each answers as the file index does through build, add and remove, opens
through Classifier.load, the CLI and the service, and refuses bad URIs and foreign collections in one line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (labelwise[milvus])")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (labelwise[milvus])")

from conftest import assert_served_like
from labelwise.cli.main import main
from labelwise.data.dataset import load_dataset
from labelwise.errors import LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.predict.vector_store import LITE_DB, MilvusStore, connect, release_lite
from labelwise.training.index import add_to_index, build_index, remove_label
from test_retrieval import check_cli_predict_and_evaluate

pytestmark = pytest.mark.integration  # real Milvus Lite databases
K = 5
MORE = ["双方签订房屋租赁合同，约定租金每月三千元。", "被告拖欠租金半年未付。", "原告要求解除租赁合同并腾退房屋。"]
STORES = ["inside", "elsewhere"]  # the folder's own database (the default), a database the index points to


def vector_db(where: str, tmp_path) -> str | None:
    """``build_index``'s vector_db for a store of STORES."""
    return None if where == "inside" else str(tmp_path / "shared.db")


def build_in(where: str, folder, tmp_path, checkpoint, dataset_dir) -> Classifier:
    """An index of ``dataset_dir`` in ``folder`` whose vectors are in the store ``where`` (of STORES)."""
    return build_index(str(checkpoint), str(dataset_dir), str(folder), k=K, vector_db=vector_db(where, tmp_path),
                       progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory, untrained_zh_checkpoint, divorce_small):
    """The same index three times: vectors in the folder (exact search), in the folder's own Milvus Lite
    database (the default) and in a Milvus Lite database elsewhere."""
    root = tmp_path_factory.mktemp("vector_db")
    db = root / "shared.db"
    source = (str(untrained_zh_checkpoint), str(divorce_small))
    indexes = {"file": build_index(*source, str(root / "file"), k=K, vector_db="file", progress=False),
               "inside": build_index(*source, str(root / "inside"), k=K, progress=False),
               "elsewhere": build_index(*source, str(root / "elsewhere"), k=K, vector_db=str(db), progress=False)}
    return root, db, indexes


def dev_texts(divorce_small) -> list[str]:
    return [e.text for e in load_dataset(divorce_small).dev]


def collection(folder) -> dict:
    return json.loads((folder / "index.json").read_text(encoding="utf-8"))["vector_db"]


def row_count(uri: str, name: str) -> int:
    return connect(uri).query(name, filter="id >= 0", output_fields=["count(*)"])[0]["count(*)"]


def assert_same_answers(a: Classifier, b: Classifier, texts: list[str]) -> None:
    assert a.labels == b.labels
    np.testing.assert_allclose(a.predict_proba(texts), b.predict_proba(texts), atol=1e-5)
    assert [p.labels for p in a.predict(texts)] == [p.labels for p in b.predict(texts)]


@pytest.mark.parametrize("where", STORES)
def test_a_milvus_index_answers_as_exact_search(where, built, divorce_small):
    root, db, indexes = built
    folder = root / where
    info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    uri = str((folder / LITE_DB).resolve()) if where == "inside" else str(db.resolve())
    assert info["format_version"] == 2 and info["vector_db"]["uri"] == (LITE_DB if where == "inside" else uri)
    want_files = {"index.json", "vectors.safetensors", "texts.jsonl"} | ({LITE_DB} if where == "inside" else set())
    assert {p.name for p in folder.iterdir()} == want_files
    from safetensors.numpy import load_file

    assert set(load_file(str(folder / "vectors.safetensors"))) == {"labels", "center"}  # no vectors in the folder
    assert row_count(uri, info["vector_db"]["collection"]) == info["size"] == indexes["file"].backend.size
    loaded = Classifier.load(folder)
    assert loaded.backend.store.kind == "milvus" and loaded.backend.store.where == f"in Milvus Lite ({uri})"
    assert_same_answers(loaded, indexes["file"], dev_texts(divorce_small))
    # the neighbours themselves: row numbers and similarities as exact search finds them
    queries = np.random.default_rng(0).normal(size=(20, info["dim"])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids, sims = loaded.backend.store.search(queries, K)
    want_ids, want_sims = indexes["file"].backend.store.search(queries, K)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(sims, want_sims, atol=1e-5)


@pytest.mark.parametrize("where", STORES)
def test_add_and_remove_in_milvus_match_the_file_index(where, tmp_path, untrained_zh_checkpoint, divorce_small):
    source = (str(untrained_zh_checkpoint), str(divorce_small))
    build_index(*source, str(tmp_path / "file"), k=K, vector_db="file", progress=False)
    build_in(where, tmp_path / "milvus", tmp_path, *source)
    more = tmp_path / "more.txt"
    more.write_text("".join(f"{t}\t租赁纠纷\n" for t in MORE), encoding="utf-8")
    texts = dev_texts(divorce_small) + MORE
    assert add_to_index(str(tmp_path / "milvus"), str(more), progress=False) == (3, ["租赁纠纷"])
    add_to_index(str(tmp_path / "file"), str(more), progress=False)
    in_milvus = Classifier.load(tmp_path / "milvus")
    assert in_milvus.backend.store.kind == "milvus"
    assert all("租赁纠纷" in p.labels for p in in_milvus.predict(MORE))
    assert_same_answers(in_milvus, Classifier.load(tmp_path / "file"), texts)

    before = collection(tmp_path / "milvus")
    uri = in_milvus.backend.store.uri
    label = in_milvus.labels[0]
    assert main(["-q", "index", "--index_dir", str(tmp_path / "milvus"), "--remove_label", label]) == 0
    removed = remove_label(str(tmp_path / "file"), label)
    after = collection(tmp_path / "milvus")
    assert after["collection"] != before["collection"]
    assert connect(uri).list_collections() == [after["collection"]]  # the old collection is dropped
    in_milvus = Classifier.load(tmp_path / "milvus")
    assert label not in in_milvus.labels
    assert in_milvus.backend.size == Classifier.load(tmp_path / "file").backend.size
    assert removed[0] > 0
    assert_same_answers(in_milvus, Classifier.load(tmp_path / "file"), texts)

    # rebuilding in place replaces the collection (a database elsewhere: and drops the old one)
    build_in(where, tmp_path / "milvus", tmp_path, *source)
    assert connect(uri).list_collections() == [collection(tmp_path / "milvus")["collection"]]
    # and rebuilding it as a file index takes the folder's own database out with the rest of the old index
    build_index(*source, str(tmp_path / "milvus"), k=K, vector_db="file", progress=False)
    assert {p.name for p in (tmp_path / "milvus").iterdir()} == {"index.json", "vectors.safetensors", "texts.jsonl"}


@pytest.mark.parametrize("where", STORES)
def test_an_add_that_stops_half_way_leaves_the_index_as_it_was(where, tmp_path, untrained_zh_checkpoint,
                                                                divorce_small, monkeypatch):
    folder = tmp_path / "milvus"
    build_in(where, folder, tmp_path, untrained_zh_checkpoint, divorce_small)
    texts = dev_texts(divorce_small)
    want = Classifier.load(folder).predict_proba(texts)
    more = tmp_path / "more.txt"
    more.write_text("".join(f"{t}\t租赁纠纷\n" for t in MORE), encoding="utf-8")

    def disk_full(*args, **kwargs):  # the vectors are in Milvus by now; index.json is the last file written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("labelwise.predict.retrieval.atomic_write_json", disk_full)
    with pytest.raises(LabelwiseError, match="no space left"):
        add_to_index(str(folder), str(more), progress=False)
    monkeypatch.undo()
    assert not list(tmp_path.glob(".milvus.*"))  # no temporary folder left
    again = Classifier.load(folder)  # the rows inserted before the failure are gone: the count check passes
    np.testing.assert_allclose(again.predict_proba(texts), want, atol=1e-6)
    assert add_to_index(str(folder), str(more), progress=False) == (3, ["租赁纠纷"])
    assert Classifier.load(folder).backend.size == again.backend.size + 3


def test_cli_builds_into_milvus_lite_by_default_and_predicts_evaluates_and_serves(built, tmp_path,
                                                                                 untrained_zh_checkpoint,
                                                                                 divorce_small, capsys):
    _, _, indexes = built
    folder = tmp_path / "index"
    assert main(["-q", "index", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(divorce_small),
                 "--index_dir", str(folder), "--k", str(K)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"index of {indexes['file'].backend.size} texts written")
    assert out.rstrip().endswith(f"; vectors in Milvus Lite ({(folder / LITE_DB).resolve()})")
    assert collection(folder)["uri"] == LITE_DB
    # the folder is the whole index: moved elsewhere, it opens and answers as before
    moved = tmp_path / "moved" / "index"
    shutil.copytree(folder, moved)
    shutil.rmtree(folder)
    assert_same_answers(Classifier.load(moved), indexes["file"], MORE)
    check_cli_predict_and_evaluate(moved, divorce_small, tmp_path, capsys)
    assert_served_like(moved, indexes["file"], MORE[:2])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("uri, says", [
    ("http://127.0.0.1:9", "cannot reach Milvus at http://127.0.0.1:9"),
    ("ftp://example.org/x", "not a Milvus URI"),
    ("milvus.txt", "a path ending in .db"),
    ("no/such/folder/milvus.db", "does not exist"),
])
def test_a_bad_vector_db_is_one_line_and_writes_nothing(uri, says, untrained_zh_checkpoint, divorce_small, tmp_path,
                                                       capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "index", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(divorce_small),
                 "--index_dir", "index", "--vector_db", uri]) == 2
    assert says in one_line_error(capsys)
    assert not (tmp_path / "index").exists()


def test_approximate_search_takes_the_folder_and_does_not_combine_with_a_vector_db(untrained_zh_checkpoint,
                                                                                  divorce_small, tmp_path):
    with pytest.raises(LabelwiseError, match="do not combine"):
        build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "i"), approximate=True,
                    vector_db=str(tmp_path / "milvus.db"), progress=False)
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (labelwise[ann])")
    clf = build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "i"), approximate=True,
                      progress=False)  # the default store with `approximate`: faiss over the folder's vectors
    assert clf.backend.store.kind == "faiss" and not (tmp_path / "i" / LITE_DB).exists()


def test_a_collection_of_another_encoder_or_gone_is_refused_in_one_line(built, tmp_path, divorce_small, capsys):
    root, db, indexes = built
    info = json.loads((root / "elsewhere" / "index.json").read_text(encoding="utf-8"))
    data = ["--data_file", str(divorce_small / "data.txt"), "--output_file", str(tmp_path / "out.txt")]

    def pointed_at(name: str, collection_name: str):
        folder = tmp_path / name
        shutil.copytree(root / "elsewhere", folder)
        (folder / "index.json").write_text(json.dumps({**info, "vector_db": {**info["vector_db"],
                                                                            "collection": collection_name}}))
        return folder

    other_dim = MilvusStore.create(str(db.resolve()), "labelwise_test_other_dim", 16, info["encoder"])
    other_dim.insert(np.eye(16, dtype=np.float32)[:1].repeat(info["size"], 0))
    other_encoder = MilvusStore.create(str(db.resolve()), "labelwise_test_other_encoder", info["dim"], "another-model")
    cases = [(pointed_at("dim", other_dim.collection), "16-dimensional vectors of"),
             (pointed_at("encoder", other_encoder.collection), "of another-model"),
             (pointed_at("gone", "labelwise_test_never_made"), "has no collection labelwise_test_never_made")]
    for folder, says in cases:
        index_json = (folder / "index.json").read_bytes()
        assert main(["predict", "--index_dir", str(folder), *data]) == 2
        err = one_line_error(capsys)
        assert says in err and "build the index again" in err
        more = tmp_path / "more.txt"
        more.write_text(f"{MORE[0]}\t租赁纠纷\n", encoding="utf-8")
        assert main(["-q", "index", "--index_dir", str(folder), "--add", str(more)]) == 2  # add checks it too
        assert says in one_line_error(capsys)
        assert (folder / "index.json").read_bytes() == index_json  # nothing written
    assert other_dim.size == info["size"] and row_count(str(db), other_dim.collection) == info["size"]
    assert indexes["elsewhere"].predict_proba(MORE).shape == (3, len(info["labels"]))  # the real one is untouched
    broken = tmp_path / "broken"
    shutil.copytree(root / "elsewhere", broken)
    (broken / "index.json").write_text(json.dumps({**info, "vector_db": {"uri": info["vector_db"]["uri"]}}))
    assert main(["predict", "--index_dir", str(broken), *data]) == 2
    assert "needs a uri, a collection" in one_line_error(capsys)


def test_a_folder_without_its_database_or_without_pymilvus_is_one_line(built, tmp_path, divorce_small, capsys,
                                                                       monkeypatch):
    root, _, _ = built
    data = ["--data_file", str(divorce_small / "data.txt"), "--output_file", str(tmp_path / "out.txt")]
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    assert main(["predict", "--index_dir", str(root / "inside"), *data]) == 2
    assert "pip install 'labelwise[milvus]'" in one_line_error(capsys)
    monkeypatch.undo()
    lost = tmp_path / "lost"
    shutil.copytree(root / "inside", lost, ignore=shutil.ignore_patterns(LITE_DB))
    assert main(["predict", "--index_dir", str(lost), *data]) == 2
    err = one_line_error(capsys)
    assert f"{lost / LITE_DB}: not found" in err and "build it again" in err
    assert not (lost / LITE_DB).exists()  # opening did not make an empty database


@pytest.mark.parametrize("where", STORES)
def test_a_milvus_lite_database_open_in_another_process_is_one_line(where, untrained_zh_checkpoint, divorce_small,
                                                                   tmp_path, capsys):
    folder = tmp_path / "index"
    build_in(where, folder, tmp_path, untrained_zh_checkpoint, divorce_small)
    db = folder / LITE_DB if where == "inside" else tmp_path / "shared.db"
    release_lite(db)  # the index build_index returned holds it open in this process
    hold = ("import sys, time; from pymilvus import MilvusClient; "
            f"MilvusClient({str(db)!r}).list_collections(); print('open', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert main(["-q", "predict", "--index_dir", str(folder), "--data_file", str(divorce_small / "data.txt"),
                     "--output_file", str(tmp_path / "out.txt")]) == 2
        err = one_line_error(capsys)
        assert "another process has it open" in err and "vector_db file" in err
        if where == "elsewhere":  # a new index in that database: refused before any embedding
            assert main(["-q", "index", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir",
                         str(divorce_small), "--index_dir", str(tmp_path / "other"), "--vector_db", str(db)]) == 2
            assert "another process has it open" in one_line_error(capsys)
    finally:
        holder.kill()
        holder.wait()
