"""A retrieval index whose vectors live in Milvus (`labelwise index --vector_db`), against a real Milvus Lite
database under tmp_path: it answers as the file index does through build, add and remove, opens through
Classifier.load, the CLI and the service, and refuses bad URIs and foreign collections in one line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (labelwise[milvus])")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (labelwise[milvus])")

from conftest import assert_served_like  # noqa: E402
from labelwise.cli.main import main  # noqa: E402
from labelwise.data.dataset import load_dataset  # noqa: E402
from labelwise.errors import LabelwiseError  # noqa: E402
from labelwise.predict.classifier import Classifier  # noqa: E402
from labelwise.predict.vector_store import MilvusStore, connect  # noqa: E402
from labelwise.training.index import add_to_index, build_index, remove_label  # noqa: E402
from test_retrieval import check_cli_predict_and_evaluate  # noqa: E402

pytestmark = pytest.mark.integration  # a real Milvus Lite database: its own server process
K = 5
MORE = ["双方签订房屋租赁合同，约定租金每月三千元。", "被告拖欠租金半年未付。", "原告要求解除租赁合同并腾退房屋。"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, untrained_zh_checkpoint, divorce_small):
    """The same index twice: vectors in the folder (exact search) and in Milvus Lite."""
    root = tmp_path_factory.mktemp("vector_db")
    db = root / "milvus.db"
    in_file = build_index(str(untrained_zh_checkpoint), str(divorce_small), str(root / "file"), k=K, progress=False)
    in_milvus = build_index(str(untrained_zh_checkpoint), str(divorce_small), str(root / "milvus"), k=K,
                            vector_db=str(db), progress=False)
    return root, db, in_file, in_milvus


def dev_texts(divorce_small) -> list[str]:
    return [e.text for e in load_dataset(divorce_small).dev]


def collection(folder) -> dict:
    return json.loads((folder / "index.json").read_text(encoding="utf-8"))["vector_db"]


def assert_same_answers(a: Classifier, b: Classifier, texts: list[str]) -> None:
    assert a.labels == b.labels
    np.testing.assert_allclose(a.predict_proba(texts), b.predict_proba(texts), atol=1e-5)
    assert [p.labels for p in a.predict(texts)] == [p.labels for p in b.predict(texts)]


def test_milvus_index_answers_as_exact_search(built, divorce_small):
    root, db, in_file, in_milvus = built
    folder = root / "milvus"
    info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    assert info["format_version"] == 2 and info["vector_db"]["uri"] == str(db.resolve())
    from safetensors.numpy import load_file

    assert set(load_file(str(folder / "vectors.safetensors"))) == {"labels", "center"}  # no vectors in the folder
    client = connect(str(db))
    assert client.query(info["vector_db"]["collection"], filter="id >= 0", output_fields=["count(*)"])[0][
        "count(*)"] == info["size"] == in_file.backend.size
    loaded = Classifier.load(folder)
    assert loaded.backend.store.kind == "milvus"
    texts = dev_texts(divorce_small)
    assert_same_answers(loaded, in_file, texts)
    # the neighbours themselves: row numbers and similarities as exact search finds them
    queries = np.random.default_rng(0).normal(size=(20, info["dim"])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids, sims = loaded.backend.store.search(queries, K)
    want_ids, want_sims = in_file.backend.store.search(queries, K)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(sims, want_sims, atol=1e-5)


def test_add_and_remove_in_milvus_match_the_file_index(tmp_path, untrained_zh_checkpoint, divorce_small):
    db = tmp_path / "milvus.db"
    build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "file"), k=K, progress=False)
    build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "milvus"), k=K, vector_db=str(db),
                progress=False)
    more = tmp_path / "more.txt"
    more.write_text("".join(f"{t}\t租赁纠纷\n" for t in MORE), encoding="utf-8")
    texts = dev_texts(divorce_small) + MORE
    assert add_to_index(str(tmp_path / "milvus"), str(more), progress=False) == (3, ["租赁纠纷"])
    add_to_index(str(tmp_path / "file"), str(more), progress=False)
    in_milvus = Classifier.load(tmp_path / "milvus")
    assert all("租赁纠纷" in p.labels for p in in_milvus.predict(MORE))
    assert_same_answers(in_milvus, Classifier.load(tmp_path / "file"), texts)

    before = collection(tmp_path / "milvus")
    label = in_milvus.labels[0]
    assert main(["-q", "index", "--index_dir", str(tmp_path / "milvus"), "--remove_label", label]) == 0
    removed = remove_label(str(tmp_path / "file"), label)
    after = collection(tmp_path / "milvus")
    client = connect(str(db))
    assert after["collection"] != before["collection"] and not client.has_collection(before["collection"])
    in_milvus = Classifier.load(tmp_path / "milvus")
    assert label not in in_milvus.labels
    assert in_milvus.backend.size == Classifier.load(tmp_path / "file").backend.size
    assert removed[0] > 0
    assert_same_answers(in_milvus, Classifier.load(tmp_path / "file"), texts)

    # rebuilding in place replaces the collection and drops the old one
    build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "milvus"), k=K, vector_db=str(db),
                progress=False)
    assert not client.has_collection(after["collection"])
    assert client.has_collection(collection(tmp_path / "milvus")["collection"])


def test_an_add_that_stops_half_way_leaves_the_index_as_it_was(tmp_path, untrained_zh_checkpoint, divorce_small,
                                                                monkeypatch):
    folder = tmp_path / "milvus"
    build_index(str(untrained_zh_checkpoint), str(divorce_small), str(folder), k=K,
                vector_db=str(tmp_path / "milvus.db"), progress=False)
    texts = dev_texts(divorce_small)
    want = Classifier.load(folder).predict_proba(texts)
    more = tmp_path / "more.txt"
    more.write_text("".join(f"{t}\t租赁纠纷\n" for t in MORE), encoding="utf-8")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("labelwise.training.index.write_index", disk_full)
    with pytest.raises(OSError):
        add_to_index(str(folder), str(more), progress=False)
    monkeypatch.undo()
    again = Classifier.load(folder)  # the rows inserted before the failure are gone: the count check passes
    np.testing.assert_allclose(again.predict_proba(texts), want, atol=1e-6)
    assert add_to_index(str(folder), str(more), progress=False) == (3, ["租赁纠纷"])
    assert Classifier.load(folder).backend.size == again.backend.size + 3


def test_cli_builds_predicts_evaluates_and_serves_from_milvus(built, tmp_path, untrained_zh_checkpoint,
                                                             divorce_small, capsys):
    root, db, in_file, _ = built
    folder = tmp_path / "index"
    assert main(["-q", "index", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(divorce_small),
                 "--index_dir", str(folder), "--k", str(K), "--vector_db", str(db)]) == 0
    assert capsys.readouterr().out.startswith(f"index of {in_file.backend.size} texts written")
    assert collection(folder)["uri"] == str(db.resolve())
    check_cli_predict_and_evaluate(folder, divorce_small, tmp_path, capsys)

    assert_served_like(folder, in_file, MORE[:2])


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


def test_approximate_and_vector_db_do_not_combine(untrained_zh_checkpoint, divorce_small, tmp_path):
    with pytest.raises(LabelwiseError, match="do not combine"):
        build_index(str(untrained_zh_checkpoint), str(divorce_small), str(tmp_path / "i"), approximate=True,
                    vector_db=str(tmp_path / "milvus.db"), progress=False)


def test_a_collection_of_another_encoder_or_gone_is_refused_in_one_line(built, tmp_path, divorce_small, capsys):
    root, db, _, in_milvus = built
    info = json.loads((root / "milvus" / "index.json").read_text(encoding="utf-8"))
    data = ["--data_file", str(divorce_small / "data.txt"), "--output_file", str(tmp_path / "out.txt")]

    def pointed_at(name: str, collection_name: str):
        folder = tmp_path / name
        shutil.copytree(root / "milvus", folder)
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
    assert other_dim.size == info["size"] and connect(str(db)).query(
        other_dim.collection, filter="id >= 0", output_fields=["count(*)"])[0]["count(*)"] == info["size"]
    assert in_milvus.predict_proba(MORE).shape == (3, len(in_milvus.labels))  # the real collection is untouched
    broken = tmp_path / "broken"
    shutil.copytree(root / "milvus", broken)
    (broken / "index.json").write_text(json.dumps({**info, "vector_db": {"uri": info["vector_db"]["uri"]}}))
    assert main(["predict", "--index_dir", str(broken), *data]) == 2
    assert "needs a uri, a collection" in one_line_error(capsys)


def test_a_milvus_lite_file_open_in_another_process_is_one_line(untrained_zh_checkpoint, divorce_small, tmp_path,
                                                               capsys):
    db = tmp_path / "busy.db"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pymilvus import MilvusClient; "
                               f"MilvusClient({str(db)!r}).list_collections(); print('open', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert main(["-q", "index", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir",
                     str(divorce_small), "--index_dir", str(tmp_path / "index"), "--vector_db", str(db)]) == 2
        assert "another process has it open" in one_line_error(capsys)
    finally:
        holder.kill()
        holder.wait()
