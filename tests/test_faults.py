"""Fault injection: damaged artefacts, refused output folders, a full disk, kill -9, and the lines users see.

Every damaged file of a checkpoint or an export must give exit 2 and exactly one stderr line naming the file;
no output folder of the user's loses a file; a write that fails leaves no temporary copy and the old model
loadable; a run killed mid-write leaves a temporary folder that the next write removes.
"""
from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from labelwise.cli.main import main
from labelwise.errors import LabelwiseError, OutputExistsError, WriteError
from labelwise.files import CHECKPOINT, atomic_write_text, prepare_output_dir
from labelwise.locks import output_lock
from labelwise.model.checkpoint import load_checkpoint, save_checkpoint
from labelwise.predict.classifier import Classifier

CORRUPTIONS = ("truncated", "zeroed", "garbage", "missing")
CHECKPOINT_FILES = ("labelwise.json", "head.safetensors", "encoder/model.safetensors", "encoder/config.json",
                    "tokenizer.json", "tokenizer_config.json")
EXPORT_FILES = ("model.onnx", "model.int8.onnx", "labelwise.json", "tokenizer.json", "tokenizer_config.json")
TEXTS = ["婚生子杨某甲由原告抚养，被告每月支付抚养费一千元。", "原、被告婚后感情尚可。"]


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))


def run(args: list[str], capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err.strip().splitlines()


def siblings(folder: Path) -> list[str]:
    """Temporary copies beside ``folder`` (``.NAME.*``)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


@pytest.fixture(scope="module")
def model(untrained_zh_checkpoint):
    return load_checkpoint(untrained_zh_checkpoint)


@pytest.fixture(scope="module")
def export_dir(untrained_zh_checkpoint, tmp_path_factory):
    from labelwise.compress.export import export_onnx

    folder = tmp_path_factory.mktemp("faults_export") / "export"
    export_onnx(untrained_zh_checkpoint, folder, quantize="int8", optimize=False)
    return folder


def copy_of(folder: Path, tmp_path: Path, checksums: bool = False) -> Path:
    """A copy to damage; without its checksums (as a folder from before they were kept), so that the checks of
    each file's form are what meets the damage (tests/test_integrity.py tests the checksums themselves)."""
    import json

    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    meta = target / "labelwise.json"
    if not checksums and meta.exists():
        obj = json.loads(meta.read_text(encoding="utf-8"))
        obj.pop("checksums", None)
        meta.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return target


# ---- every damaged artefact: one line naming the file -------------------------------------------------------
@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_damaged_checkpoint_file_is_one_line_naming_it(untrained_zh_checkpoint, divorce_small, tmp_path, capsys,
                                                        name, how):
    folder = copy_of(untrained_zh_checkpoint, tmp_path)
    corrupt(folder / name, how)
    out = tmp_path / "out.txt"
    predict = ["predict", "--params_path", str(folder), "--data_file", str(divorce_small / "data.txt"),
               "--output_file", str(out)]
    if (name, how) == ("tokenizer_config.json", "missing"):  # tokenizer.json alone defines the tokenizer
        want = Classifier.load(untrained_zh_checkpoint).predict_proba(TEXTS)
        np.testing.assert_allclose(Classifier.load(folder).predict_proba(TEXTS), want, atol=1e-6)
        return
    code, lines = run(predict, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert str(folder / name) in lines[0] and lines[0].startswith("labelwise: error: "), lines[0]
    assert not out.exists()
    with pytest.raises(LabelwiseError, match=re.escape(str(folder / name))):  # the service loads the same way
        Classifier.load(folder)
    if how == "truncated":
        code, lines = run(["export", "--params_path", str(folder), "--output_path", str(tmp_path / "e")], capsys)
        assert code == 2 and len(lines) == 1 and str(folder / name) in lines[0], lines
        assert not (tmp_path / "e").exists() and not siblings(tmp_path / "e")


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("name", EXPORT_FILES)
def test_damaged_export_file_is_one_line_naming_it(export_dir, divorce_small, tmp_path, capsys, name, how):
    folder = copy_of(export_dir, tmp_path)
    corrupt(folder / name, how)
    precision = "int8" if name == "model.int8.onnx" else "fp32"
    if (name, how) == ("tokenizer_config.json", "missing"):  # tokenizer.json alone defines the tokenizer
        want = Classifier.load(export_dir).predict_proba(TEXTS)
        np.testing.assert_allclose(Classifier.load(folder).predict_proba(TEXTS), want, atol=1e-6)
        return
    code, lines = run(["predict", "--model_path", str(folder), "--precision", precision, "--data_file",
                       str(divorce_small / "data.txt"), "--output_file", str(tmp_path / "out.txt")], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert str(folder / name) in lines[0], lines[0]
    with pytest.raises(LabelwiseError, match=re.escape(str(folder / name))):
        Classifier.load(folder, precision=precision)


def test_wrong_shapes_are_one_line_naming_the_file(untrained_zh_checkpoint, untrained_en_checkpoint, export_dir,
                                                  tmp_path, capsys):
    import json

    import torch
    from safetensors.torch import load_file, save_file

    folder = copy_of(untrained_zh_checkpoint, tmp_path)
    head = load_file(folder / "head.safetensors")
    save_file({"weight": torch.zeros(len(head["bias"]), 16), "bias": head["bias"]}, folder / "head.safetensors")
    with pytest.raises(LabelwiseError, match=r"head.safetensors: its weight is \(20, 16\)"):
        Classifier.load(folder)
    # another model's encoder weights (another vocabulary): the shapes do not fit encoder/config.json
    shutil.copyfile(untrained_zh_checkpoint / "head.safetensors", folder / "head.safetensors")
    shutil.copyfile(untrained_en_checkpoint / "encoder" / "model.safetensors", folder / "encoder" / "model.safetensors")
    with pytest.raises(LabelwiseError, match=r"encoder/model.safetensors: its tensors do not have the shapes"):
        Classifier.load(folder)
    # an encoder file that lacks some weights would start them at random: refused
    folder = copy_of(untrained_zh_checkpoint, tmp_path / "b")
    weights = load_file(folder / "encoder" / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".layer.1." not in k}, folder / "encoder" / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(LabelwiseError, match=r"model.safetensors: \d+ of the encoder's weights are missing"):
        Classifier.load(folder)
    # thresholds and labels that disagree
    folder = copy_of(untrained_zh_checkpoint, tmp_path / "c")
    meta = json.loads((folder / "labelwise.json").read_text(encoding="utf-8"))
    (folder / "labelwise.json").write_text(json.dumps({**meta, "thresholds": [0.5]}), encoding="utf-8")
    with pytest.raises(LabelwiseError, match=r"labelwise.json: \"thresholds\" is not a list of 20 numbers"):
        Classifier.load(folder)
    # an export whose labelwise.json lists fewer labels than its graph gives
    folder = copy_of(export_dir, tmp_path / "d")
    meta = json.loads((folder / "labelwise.json").read_text(encoding="utf-8"))
    (folder / "labelwise.json").write_text(json.dumps({**meta, "labels": meta["labels"][:3],
                                                       "thresholds": None}), encoding="utf-8")
    code, lines = run(["predict", "--model_path", str(folder), "--data_file", str(tmp_path / "x.txt")], capsys)
    assert code == 2 and len(lines) == 1 and "model.onnx: its graph gives 20 outputs" in lines[0], lines


class Trap:
    """Unpickling this creates a file: proof that a pickle was (or was not) opened."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_where_safetensors_belongs_is_refused_unopened(untrained_zh_checkpoint, tmp_path, capsys):
    marker = tmp_path / "unpickled"
    folder = copy_of(untrained_zh_checkpoint, tmp_path)
    (folder / "encoder" / "model.safetensors").unlink()
    (folder / "encoder" / "pytorch_model.bin").write_bytes(pickle.dumps(Trap(marker)))
    code, lines = run(["export", "--params_path", str(folder), "--output_path", str(tmp_path / "e")], capsys)
    assert code == 2 and len(lines) == 1 and f"{folder / 'encoder' / 'pytorch_model.bin'}: a pickle file" in lines[0]
    (folder / "head.safetensors").rename(folder / "head.pt")
    (folder / "head.pt").write_bytes(pickle.dumps(Trap(marker)))
    with pytest.raises(LabelwiseError, match=r"head.pt: a pickle file where labelwise expects safetensors"):
        Classifier.load(folder)
    assert not marker.exists()


@pytest.mark.integration  # a new Python process
def test_one_line_in_a_real_process(untrained_zh_checkpoint, divorce_small, tmp_path):
    folder = copy_of(untrained_zh_checkpoint, tmp_path)
    corrupt(folder / "encoder" / "model.safetensors", "truncated")
    done = subprocess.run([sys.executable, "-m", "labelwise", "predict", "--params_path", str(folder),
                           "--data_file", str(divorce_small / "data.txt"), "--output_file", str(tmp_path / "o.txt")],
                          capture_output=True, text=True, timeout=120, check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"labelwise: error: {folder / 'encoder' / 'model.safetensors'}: unreadable")


# ---- output folders: refused, never emptied ------------------------------------------------------------------
def test_the_dataset_folder_is_never_a_save_dir(tiny_zh_encoder, divorce_small, tmp_path, capsys):
    data = copy_of(divorce_small, tmp_path)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    for command in ("train", "zeroshot"):
        for extra in ([], ["--overwrite"]):
            code, lines = run([command, "--model_name", str(tiny_zh_encoder), "--dataset_dir", str(data),
                               "--save_dir", str(data), *extra], capsys)
            assert code == 2 and len(lines) == 1 and "is also --dataset_dir, an input" in lines[0], lines
    # nor a folder that holds it
    code, lines = run(["train", "--dataset_dir", str(data), "--save_dir", str(tmp_path), "--overwrite"], capsys)
    assert code == 2 and "holds --dataset_dir" in lines[0]
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_a_users_folder_is_refused_and_kept(tiny_zh_encoder, divorce_small, export_dir, untrained_zh_checkpoint,
                                           tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    for args in (["train", "--dataset_dir", str(divorce_small), "--model_name", str(tiny_zh_encoder)],
                 ["zeroshot", "--dataset_dir", str(divorce_small), "--model_name", str(tiny_zh_encoder)]):
        code, lines = run([*args, "--save_dir", str(mine)], capsys)
        assert code == 2 and len(lines) == 1, lines
        assert f"{mine}: not empty and not written by labelwise as a checkpoint" in lines[0]
        assert lines[0].endswith("(--overwrite)")
    code, lines = run(["index", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(divorce_small),
                       "--index_dir", str(mine)], capsys)
    assert code == 2 and "not written by labelwise as a retrieval index" in lines[0] and "(--overwrite)" in lines[0]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"
    # an export folder is not a checkpoint: refused too
    with pytest.raises(OutputExistsError, match="not written by labelwise as a checkpoint"):
        prepare_output_dir(export_dir, CHECKPOINT)


def test_overwrite_writes_into_a_users_folder_and_keeps_its_other_files(model, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    (mine / "data").mkdir()
    (mine / "data" / "train.txt").write_text("text\tlabel\n", encoding="utf-8")
    with pytest.raises(OutputExistsError):
        save_checkpoint(mine, *model)
    save_checkpoint(mine, *model, overwrite=True)
    assert Classifier.load(mine).predict_proba(TEXTS).shape == (2, 20)
    save_checkpoint(mine, *model)  # now labelwise's checkpoint: replaced again, the user's files still kept
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert (mine / "data" / "train.txt").exists() and not siblings(mine)
    # a labelwise checkpoint is replaced as a whole: a stale file of an older one goes, the user's note stays
    (mine / "vocab.txt").write_text("stale", encoding="utf-8")
    save_checkpoint(mine, *model)
    assert not (mine / "vocab.txt").exists() and (mine / "notes.txt").exists()


def test_prune_refuses_a_users_shape_folder_unless_overwrite_and_keeps_its_files(untrained_zh_checkpoint,
                                                                                   divorce_small, tmp_path, capsys):
    out = tmp_path / "prune"
    mine = out / "width_mult_0.5"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    args = ["-q", "prune", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(divorce_small),
            "--output_dir", str(out), "--width_mult_list", "1/2", "--num_train_epochs", "1", "--max_train_samples",
            "32", "--max_dev_samples", "16", "--max_seq_length", "32"]
    code, lines = run(args, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert f"{mine}: not empty and not written by labelwise as a checkpoint" in lines[0]
    assert lines[0].endswith("(--overwrite)") and [p.name for p in mine.iterdir()] == ["notes.txt"]
    code, lines = run([*args, "--overwrite"], capsys)
    assert code == 0, lines
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me" and not siblings(mine)
    assert Classifier.load(mine).predict_proba(TEXTS).shape == (2, 20)


def test_a_users_train_state_folder_is_refused_before_training_and_kept(tiny_zh_encoder, divorce_small, tmp_path,
                                                                      capsys):
    save_dir, state = tmp_path / "ckpt", tmp_path / "ckpt.train_state"
    state.mkdir()
    (state / "notes.txt").write_text("keep me", encoding="utf-8")
    args = ["-q", "train", "--dataset_dir", str(divorce_small), "--model_name", str(tiny_zh_encoder), "--save_dir",
            str(save_dir), "--epochs", "1", "--max_train_samples", "32", "--max_dev_samples", "16",
            "--max_seq_length", "32", "--no_baseline"]
    code, lines = run(args, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert f"{state}: labelwise keeps the resume state of --save_dir {save_dir} in this folder" in lines[0]
    assert lines[0].endswith("(--overwrite)") and not save_dir.exists()
    code, lines = run([*args, "--overwrite"], capsys)  # the state goes in beside the user's file, then only it goes
    assert code == 0, lines
    assert [p.name for p in state.iterdir()] == ["notes.txt"] and (save_dir / "labelwise.json").exists()


def test_a_resume_state_is_never_unpickled_and_a_damaged_one_is_one_line(tmp_path):
    import torch

    from labelwise.training.resume import TRAIN_STATE, load_state, save_state

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()  # a state with moments in it
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    folder = tmp_path / "ckpt.train_state"
    save_state(folder, model, optimizer, scheduler, {"epoch": 1}, {"seed": 3})
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "optimizer.safetensors",
                                                        "random.safetensors", "state.json"]  # no pickle
    assert all(TRAIN_STATE.owns_name(p.name) for p in folder.iterdir())
    fresh = torch.optim.AdamW(model.parameters())
    load_state(folder, model, fresh, scheduler, {"seed": 3}, "cpu")
    for want, got in zip(optimizer.state_dict()["state"].values(), fresh.state_dict()["state"].values()):
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)

    def refused(match: str) -> None:
        with pytest.raises(LabelwiseError, match=match) as caught:
            load_state(folder, model, torch.optim.AdamW(model.parameters()), scheduler, {"seed": 3}, "cpu")
        assert "\n" not in str(caught.value) and str(caught.value).startswith(f"{folder}: the resume state cannot")

    good = {p.name: p.read_bytes() for p in folder.iterdir()}
    for name, data in good.items():
        for how in ("truncated", "garbage"):
            corrupt(folder / name, how)
            refused("delete the folder to start over")
            (folder / name).write_bytes(data)
    save_state(folder, torch.nn.Linear(4, 2), optimizer, scheduler, {"epoch": 1}, {"seed": 3})  # another model's
    refused(r"Error\(s\) in loading state_dict")
    # an older labelwise's folder holds optimizer.pt: loaded without unpickling code, so a trap only refuses
    marker = tmp_path / "unpickled"
    save_state(folder, model, optimizer, scheduler, {"epoch": 1}, {"seed": 3})
    (folder / "optimizer.safetensors").unlink()
    (folder / "optimizer.pt").write_bytes(pickle.dumps(Trap(marker)))
    refused("Unpickl|weights_only")
    assert not marker.exists()


# ---- a full disk, no permission ------------------------------------------------------------------------------
def test_disk_full_while_saving_is_one_line_and_the_old_checkpoint_survives(model, untrained_zh_checkpoint,
                                                                            tmp_path, monkeypatch):
    import safetensors.torch

    folder = copy_of(untrained_zh_checkpoint, tmp_path)
    want = Classifier.load(folder).predict_proba(TEXTS)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(WriteError) as err:
        save_checkpoint(folder, *model)
    message = str(err.value)
    assert message.startswith(f"{folder}: cannot write it: no space left on the device (it needs about ")
    assert "MB" in message and "free there" in message and "\n" not in message
    assert not siblings(folder)
    np.testing.assert_allclose(Classifier.load(folder).predict_proba(TEXTS), want)
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(safetensors.torch, "save_file", denied)
    with pytest.raises(WriteError, match="cannot write it: permission denied; choose a place you can write to"):
        save_checkpoint(folder, *model)


def test_disk_full_through_the_command_line(tiny_zh_encoder, divorce_small, tmp_path, monkeypatch, capsys):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    data = tmp_path / "data"  # label.txt and a few dev lines: zero-shot embeds little before it saves
    data.mkdir()
    shutil.copyfile(divorce_small / "label.txt", data / "label.txt")
    dev = (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()[:4]
    (data / "dev.txt").write_text("\n".join(dev) + "\n", encoding="utf-8")
    code, lines = run(["zeroshot", "--dataset_dir", str(data), "--model_name", str(tiny_zh_encoder),
                       "--save_dir", str(tmp_path / "zs")], capsys)
    assert code == 2 and len(lines) == 1 and "zs: cannot write it: no space left on the device" in lines[0], lines
    assert not (tmp_path / "zs").exists() and not siblings(tmp_path / "zs")


def _mount(target: Path, options: str) -> bool:
    target.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, check=False).returncode == 0


def test_a_real_small_disk_and_a_read_only_one(model, divorce_small, untrained_zh_checkpoint, tmp_path, capsys):
    small, read_only = tmp_path / "small", tmp_path / "ro"
    if not _mount(small, "size=1m"):
        pytest.skip("needs root and `mount -t tmpfs` (a full disk is injected in the tests above)")
    try:
        with pytest.raises(WriteError, match=r"ckpt: cannot write it: no space left on the device \(it needs about"):
            save_checkpoint(small / "ckpt", *model)
        assert list(small.iterdir()) == []  # no partial folder, no temporary copy
        with open(small / "filler", "wb", buffering=0) as filler, pytest.raises(OSError):  # fill every block
            while True:
                filler.write(b"x" * 4096)
        code, lines = run(["predict", "--params_path", str(untrained_zh_checkpoint), "--data_file",
                           str(divorce_small / "data.txt"), "--output_file", str(small / "out.txt")], capsys)
        assert code == 2 and len(lines) == 1 and "out.txt: cannot write it: no space left" in lines[0], lines
        assert sorted(p.name for p in small.iterdir()) == ["filler"]
        assert _mount(read_only, "ro,size=1m")
        with pytest.raises(WriteError, match="ckpt: cannot write it: read-only file system"):
            save_checkpoint(read_only / "ckpt", *model)
    finally:
        for folder in (small, read_only):
            subprocess.run(["umount", str(folder)], capture_output=True, check=False)


# ---- kill -9 -------------------------------------------------------------------------------------------------
KILLED_SAVE = textwrap.dedent("""
    import sys, time
    from labelwise.model.checkpoint import load_checkpoint, save_checkpoint
    model, tokenizer, meta = load_checkpoint(sys.argv[1])
    def stall(folder, *args, **kwargs):
        print("writing", flush=True)
        time.sleep(600)
    tokenizer.save_pretrained = stall  # the encoder and head are written; the kill comes here
    save_checkpoint(sys.argv[2], model, tokenizer, meta)
""")


def _start(args: list[str], wait_for: str, stream: str = "stdout") -> subprocess.Popen:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    for line in pipe:
        if wait_for in line or time.time() > deadline:
            break
    return proc


@pytest.mark.integration  # a new Python process
def test_kill_during_a_checkpoint_write(untrained_zh_checkpoint, model, tmp_path, caplog):
    target = copy_of(untrained_zh_checkpoint, tmp_path)
    want = Classifier.load(target).predict_proba(TEXTS)
    proc = _start([sys.executable, "-c", KILLED_SAVE, str(untrained_zh_checkpoint), str(target)], "writing")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    stale = siblings(target)
    assert len(stale) == 1 and stale[0].endswith(".tmp") and (target.parent / stale[0] / "head.safetensors").exists()
    np.testing.assert_allclose(Classifier.load(target).predict_proba(TEXTS), want)  # the old checkpoint is whole
    save_checkpoint(target, *model)
    assert not siblings(target) and f"removed {target.parent / stale[0]}" in caplog.text


@pytest.mark.integration  # a new Python process
def test_kill_during_training(tiny_zh_encoder, divorce_small, untrained_zh_checkpoint, tmp_path):
    save_dir = copy_of(untrained_zh_checkpoint, tmp_path)
    proc = _start([sys.executable, "-m", "labelwise", "train", "--dataset_dir", str(divorce_small), "--save_dir",
                   str(save_dir), "--model_name", str(tiny_zh_encoder), "--epochs", "40", "--max_seq_length", "32",
                   "--max_train_samples", "64", "--batch_size", "16", "--no_baseline", "--learning_rate", "1e-3"],
                  "epoch 1:", stream="stderr")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    clf = Classifier.load(save_dir)  # whichever epoch was last saved, it is complete
    assert clf.predict_proba(TEXTS).shape == (2, 20)
    for stale in siblings(save_dir):  # a temporary copy of the killed run if the kill came mid-write; its lock file
        assert stale.endswith(".tmp") or stale == f".{save_dir.name}.lock", stale
    with output_lock(save_dir):  # the kernel dropped the killed run's lock: the next run takes it
        prepare_output_dir(save_dir, CHECKPOINT)  # and starts by removing the temporary copies
    assert not [s for s in siblings(save_dir) if re.match(rf"\.{save_dir.name}\.\d+-", s)]
    assert f".{save_dir.name}.lock" not in siblings(save_dir)  # and removes the lock file when it is done


def test_stale_copies_of_live_runs_stay_and_a_half_swapped_folder_is_put_back(tmp_path):
    folder = tmp_path / "ckpt"
    mine = tmp_path / f".ckpt.{os.getpid()}-abcd.tmp"  # this process's: still in use
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    gone = tmp_path / f".ckpt.{dead}-wxyz.tmp"
    aside = tmp_path / f".ckpt.{dead}.old"  # killed between setting the old folder aside and renaming the new in
    for path in (mine, gone, aside):
        path.mkdir()
    (aside / "labelwise.json").write_text("{}", encoding="utf-8")
    prepare_output_dir(folder, CHECKPOINT)
    assert mine.exists() and not gone.exists() and not aside.exists()
    assert (folder / "labelwise.json").exists()


# ---- the lines users see -------------------------------------------------------------------------------------
def test_a_one_megabyte_label_is_cut_in_the_error_line(divorce_small, tmp_path, capsys):
    data = copy_of(divorce_small, tmp_path)
    huge = "婚" * 1_000_000
    with open(data / "train.txt", "a", encoding="utf-8") as handle:
        handle.write(f"一段文字\t{huge}\n")
    code, lines = run(["train", "--dataset_dir", str(data), "--save_dir", str(tmp_path / "c")], capsys)
    assert code == 2 and len(lines) == 1 and len(lines[0]) < 400, len(lines[0])
    assert "(1,000,000 characters) is not in label.txt" in lines[0] and "train.txt:301" in lines[0]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_files_follow_the_umask(model, tmp_path, mask):
    old = os.umask(mask)
    try:
        save_checkpoint(tmp_path / "ckpt", *model)
        written = atomic_write_text(tmp_path / "out.txt", "x\n")
    finally:
        os.umask(old)
    for path in [tmp_path / "ckpt", *(tmp_path / "ckpt").rglob("*"), written]:
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert path.stat().st_mode & 0o777 == want, (path, oct(path.stat().st_mode))
