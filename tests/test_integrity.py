"""Model files damaged in place (size kept): named by their checksum at load, and never answered as empty labels;
the small ones: CR-only files, label names in model cards, disk-full messages, one run per output folder."""
from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labelwise.cli.main import main
from labelwise.errors import BrokenModel
from labelwise.files import write_error
from labelwise.model.integrity import checksums
from labelwise.predict.classifier import Classifier

NAN = struct.pack("<f", float("nan"))


from labelwise.predict.onnx_backend import WEIGHT_PATTERNS  # noqa: E402

def overwrite_middle(path: Path, size: int = 4096) -> None:
    """Bytes in the middle of the weights become NaN floats; the file keeps its size and its form."""
    data = bytearray(path.read_bytes())
    start = (len(data) // 2) & ~3
    data[start:start + size] = NAN * (size // 4)
    path.write_bytes(bytes(data))


def nan_layer(path: Path) -> None:
    """The embeddings' LayerNorm weights of a safetensors file become NaN, in place (the header is kept)."""
    data = bytearray(path.read_bytes())
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_size])
    name = next(k for k in header if k.endswith("embeddings.LayerNorm.weight"))
    begin, end = (8 + header_size + o for o in header[name]["data_offsets"])
    data[begin:end] = NAN * ((end - begin) // 4)
    path.write_bytes(bytes(data))


def copy_of(folder: Path, tmp_path: Path, checksums_kept: bool = True) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    if not checksums_kept:  # as a folder written before checksums were kept
        meta = json.loads((target / "labelwise.json").read_text(encoding="utf-8"))
        meta.pop("checksums")
        (target / "labelwise.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return target


def predict(folder: Path, divorce_small: Path, tmp_path: Path, capsys, *extra: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    flag = "--params_path" if (folder / "head.safetensors").exists() else "--model_path"
    code = main(["predict", flag, str(folder), "--data_file", str(divorce_small / "data.txt"),
                 "--output_file", str(tmp_path / "out.txt"), *extra])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture(scope="module")
def export_dir(untrained_zh_checkpoint, tmp_path_factory):
    from labelwise.compress.export import export_onnx

    folder = tmp_path_factory.mktemp("integrity") / "export"
    export_onnx(untrained_zh_checkpoint, folder, quantize="int8", optimize=False)
    return folder


def test_checkpoints_and_exports_record_the_checksum_of_every_weight_file(untrained_zh_checkpoint, export_dir):
    for folder, names in ((untrained_zh_checkpoint, {"encoder/model.safetensors", "head.safetensors"}),
                          (export_dir, {"model.onnx", "model.int8.onnx"})):
        recorded = json.loads((folder / "labelwise.json").read_text(encoding="utf-8"))["checksums"]
        assert set(recorded) == names and recorded == checksums(folder, WEIGHT_PATTERNS)


@pytest.mark.parametrize("name", ["encoder/model.safetensors", "head.safetensors"])
def test_a_checkpoint_damaged_in_place_is_one_line_naming_the_file(untrained_zh_checkpoint, divorce_small, tmp_path,
                                                                   capsys, name):
    folder = copy_of(untrained_zh_checkpoint, tmp_path)
    size = (folder / name).stat().st_size
    overwrite_middle(folder / name, 64)
    assert (folder / name).stat().st_size == size
    code, lines = predict(folder, divorce_small, tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert f"{folder / name}: its content is not what labelwise wrote" in lines[0] and "SHA-256" in lines[0]
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("precision,name", [("fp32", "model.onnx"), ("int8", "model.int8.onnx")])
def test_an_export_damaged_in_place_is_one_line_naming_the_file(export_dir, divorce_small, tmp_path, capsys,
                                                                precision, name):
    folder = copy_of(export_dir, tmp_path)
    overwrite_middle(folder / name)
    code, lines = predict(folder, divorce_small, tmp_path, capsys, "--precision", precision)
    assert code == 2 and len(lines) == 1 and f"{folder / name}: its content is not what labelwise wrote" in lines[0]


def test_nan_scores_are_an_error_not_empty_labels(untrained_zh_checkpoint, divorce_small, tmp_path, capsys):
    """A folder without checksums (written before they were kept) and damaged weights: the scores say it."""
    folder = copy_of(untrained_zh_checkpoint, tmp_path, checksums_kept=False)
    nan_layer(folder / "encoder" / "model.safetensors")
    code, lines = predict(folder, divorce_small, tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "gives NaN or infinite scores" in lines[0] and "weight files are damaged" in lines[0]
    assert not (tmp_path / "out.txt").exists()


def test_the_service_reports_a_broken_model_unhealthy_instead_of_answering_nulls(untrained_zh_checkpoint, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from labelwise.serve.app import create_app

    folder = copy_of(untrained_zh_checkpoint, tmp_path, checksums_kept=False)
    nan_layer(folder / "encoder" / "model.safetensors")
    broken = Classifier.load(folder, device="cpu")
    with pytest.raises(BrokenModel):
        broken.predict_proba(["婚生子杨某甲由原告抚养。"])
    with TestClient(create_app(broken)) as client:
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        assert "NaN" in health.json()["error"]
        for route, body in (("/predict", {"texts": ["婚生子"]}), ("/models/cls_multi_label", {"data": {"text": ["x"]}})):
            answer = client.post(route, json=body)
            assert answer.status_code == 503 and "null" not in answer.text and "NaN" in answer.json()["error"]


def test_a_healthy_model_is_not_flagged(untrained_zh_checkpoint):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from labelwise.serve.app import create_app

    with TestClient(create_app(Classifier.load(untrained_zh_checkpoint, device="cpu"))) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.app.state.slot.current.batcher.stats["forward_passes"] == 0  # the start-up probe is not counted


# ---- the small ones ----------------------------------------------------------------------------------------------
def test_cr_only_line_endings_read_as_lines(tiny_zh_encoder, divorce_small, tmp_path, capsys):
    data = tmp_path / "cr"
    shutil.copytree(divorce_small, data)
    for name in ("train.txt", "dev.txt", "label.txt"):
        path = data / name
        path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    from labelwise.data.dataset import load_dataset

    got, want = load_dataset(data), load_dataset(divorce_small)
    assert [(e.text, e.labels) for e in got.train] == [(e.text, e.labels) for e in want.train]
    assert got.labels == want.labels
    capsys.readouterr()
    assert main(["zeroshot", "--model_name", str(tiny_zh_encoder), "--dataset_dir", str(data), "--save_dir",
                 str(tmp_path / "zs")]) == 0, capsys.readouterr().err  # was: "48 tabs, expected exactly 1"


def test_label_names_are_shown_in_the_model_card_never_rendered(tmp_path):
    from labelwise.model.card import write_model_card
    from labelwise.model.checkpoint import CheckpointMeta

    labels = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "plain"]
    meta = CheckpointMeta(labels=labels, metrics={"per_label": [
        {"label": labels[0], "dev_support": 1, "dev_f1": 10.0}, {"label": labels[1], "dev_support": 2, "dev_f1": 5.0}]})
    write_model_card(tmp_path, meta)
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(2)&gt;" in text


def test_a_disk_full_message_never_says_the_result_fits(tmp_path):
    failure = write_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "export", needed=1000)
    message = str(failure)
    assert "temporary copies" in message and "free there now that the partial files are removed" in message
    huge = str(write_error(OSError(errno.ENOSPC, "No space"), tmp_path / "export", needed=1 << 60))
    assert "free there" in huge and "temporary copies" not in huge


def test_a_second_run_into_the_same_folder_refuses_in_one_line(tiny_zh_encoder, divorce_small, tmp_path, capsys):
    save_dir = tmp_path / "ckpt"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom labelwise.locks import output_lock\n"
        f"with output_lock({str(save_dir)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (["train", "--model_name", str(tiny_zh_encoder), "--dataset_dir", str(divorce_small),
                         "--save_dir", str(save_dir), "--epochs", "1", "--max_seq_length", "16"],
                        ["zeroshot", "--model_name", str(tiny_zh_encoder), "--dataset_dir", str(divorce_small),
                         "--save_dir", str(save_dir)]):
            capsys.readouterr()
            started = time.monotonic()
            code = main(command)
            lines = capsys.readouterr().err.strip().splitlines()
            assert code == 2 and len(lines) == 1, lines
            assert f"another labelwise run (process {holder.pid}) is writing this folder" in lines[0]
            assert time.monotonic() - started < 30  # refused before any work
        assert not save_dir.exists()
    finally:
        holder.kill()
        holder.wait(10)
    from labelwise.locks import output_lock

    with output_lock(save_dir):  # once the holder is gone (killed: the kernel drops its lock), the folder is free
        assert (tmp_path / ".ckpt.lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".ckpt.lock").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (root only: skipped where mounting is not allowed)."""
    where = tmp_path / "small"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield where
    subprocess.run(["umount", str(where)], check=False)


@pytest.mark.integration  # a new Python process
def test_an_export_onto_a_full_disk_is_refused_in_one_line_before_any_work(untrained_zh_checkpoint, small_disk):
    done = subprocess.run([sys.executable, "-m", "labelwise", "export", "--params_path", str(untrained_zh_checkpoint),
                           "--output_path", str(small_disk / "export"), "--quantize", "int8"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TMPDIR": str(small_disk)})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr  # was: a protobuf DecodeError traceback
    assert "not enough free space" in lines[0] and "MB are free" in lines[0]
    assert not [p for p in small_disk.iterdir() if p.name.startswith((".export", "export"))]
