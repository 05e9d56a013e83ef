"""Pruning: importance, reorder, submodels, cut, distillation, and the pruned folders downstream."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_bert
from labelwise.cli.main import main
from labelwise.compress.prune import PruneConfig, plan_shapes, prune
from labelwise.errors import LabelwiseError
from labelwise.model import surgery as structure
from labelwise.model.network import MultiLabelModel
from labelwise.predict.classifier import Classifier


def _model(heads=4, layers=3, seed=0) -> MultiLabelModel:
    encoder = tiny_bert(120, seed=seed, num_attention_heads=heads, num_hidden_layers=layers)
    model = MultiLabelModel(encoder, 5, "mean").eval()
    torch.nn.init.normal_(model.head.weight, std=0.5)
    return model


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (4, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}, (torch.rand(4, 5, generator=g) > 0.6).float()


def _gated_logits(model, inputs, shape: structure.Shape, full: structure.Shape) -> torch.Tensor:
    """The full, unsliced model with the dropped heads and neurons multiplied by 0 and dropped layers skipped."""
    layers = model.encoder.encoder.layer
    head_gate = torch.zeros(len(layers), full.heads)
    head_gate[:, : shape.heads] = 1
    neuron_gate = torch.zeros(len(layers), full.neurons)
    neuron_gate[:, : shape.neurons] = 1
    size = structure.head_size(model.encoder)
    hooks = [h for i, layer in enumerate(layers) for h in (
        layer.attention.output.dense.register_forward_pre_hook(structure._gate_hook(head_gate, i, size)),
        layer.output.dense.register_forward_pre_hook(structure._gate_hook(neuron_gate, i, 1)))]
    try:
        with structure.active_shape(model.encoder, structure.Shape(full.heads, full.neurons, shape.layers)):
            return model(**inputs).logits
    finally:
        for h in hooks:
            h.remove()


def test_reorder_keeps_outputs_and_puts_important_units_first():
    model = _model()
    inputs, y = _batch()
    before = model(**inputs).logits
    loss = torch.nn.BCEWithLogitsLoss()
    heads, neurons = structure.rank_units(model, [(inputs, y)], loss)
    assert heads.shape == (3, 4) and neurons.shape == (3, 64) and heads.sum() > 0
    structure.reorder(model.encoder, heads, neurons)
    torch.testing.assert_close(model(**inputs).logits, before, atol=1e-5, rtol=0)
    again, again_neurons = structure.rank_units(model, [(inputs, y)], loss)
    assert torch.all(again[:, :-1] >= again[:, 1:] - 1e-6)  # most important first, in every layer
    assert torch.all(again_neurons[:, :-1] >= again_neurons[:, 1:] - 1e-6)


@pytest.mark.parametrize("shape", [structure.Shape(2, 32, (0, 1, 2)), structure.Shape(3, 48, (0, 2)),
                                   structure.Shape(1, 16, (1,))])
def test_cut_model_equals_the_masked_full_model(shape):
    model = _model()
    inputs, y = _batch(1)
    structure.reorder(model.encoder, *structure.rank_units(model, [(inputs, y)], torch.nn.BCEWithLogitsLoss()))
    full = structure.full_shape(model.encoder)
    masked = _gated_logits(model, inputs, shape, full)
    structure.make_sliceable(model.encoder)
    with structure.active_shape(model.encoder, shape):
        sliced = model(**inputs).logits
    small = MultiLabelModel(structure.cut(model.encoder, shape), 5, "mean").eval()
    small.head.load_state_dict(model.head.state_dict())
    torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=0)
    torch.testing.assert_close(small(**inputs).logits, masked, atol=1e-5, rtol=0)
    assert not torch.allclose(masked, model(**inputs).logits, atol=1e-3)  # pruning did change something
    assert small.encoder.config.num_hidden_layers == len(shape.layers)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_cut_encoder_folder_round_trip_and_stock_transformers_refuses_it(tmp_path):
    from transformers import AutoModel

    model = _model()
    inputs, _ = _batch()
    shape = structure.Shape(2, 40, (0, 2))
    small = structure.cut(model.encoder, shape)
    small.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["num_attention_heads"], config["attention_head_size"], config["intermediate_size"],
            config["num_hidden_layers"]) == (2, 8, 40, 2)
    back = structure.load_cut_encoder(tmp_path, add_pooling_layer=False)
    torch.testing.assert_close(back(**inputs).last_hidden_state, small(**inputs).last_hidden_state)
    with pytest.raises(Exception, match="mismatch|size"):  # never silently loaded with other shapes
        AutoModel.from_pretrained(tmp_path)


def test_depth_only_cut_is_a_stock_transformers_folder(tmp_path):
    from transformers import AutoModel

    model = _model()
    inputs, _ = _batch()
    small = structure.cut(model.encoder, structure.Shape(4, 64, (1, 2)))
    small.save_pretrained(tmp_path)
    assert structure.load_cut_encoder(tmp_path, False) is None  # nothing special to load
    torch.testing.assert_close(AutoModel.from_pretrained(tmp_path)(**inputs).last_hidden_state,
                               small(**inputs).last_hidden_state)


def test_ratios_that_do_not_give_whole_heads_name_the_ones_that_do():
    encoder = _model(heads=8, layers=4).encoder
    with pytest.raises(LabelwiseError, match=r"2/3 × 8 attention heads.*1/8, 1/4, 3/8, 1/2, 5/8, 3/4, 7/8, 1"):
        plan_shapes(encoder, ["3/4", "2/3"], ["1"])
    with pytest.raises(LabelwiseError, match=r"1/3 × 4 layers.*1/4, 1/2, 3/4, 1"):
        plan_shapes(encoder, ["1/2"], ["1/3"])
    with pytest.raises(LabelwiseError, match="not a ratio"):
        plan_shapes(encoder, ["half"], ["1"])
    with pytest.raises(LabelwiseError, match="model itself"):
        plan_shapes(encoder, ["1"], ["1"])
    plans = plan_shapes(encoder, ["3/4", "0.5", "1"], ["1", "1/2"], layer_scores=torch.tensor([0.1, 0.5, 0.0, 0.3]))
    shapes = {(str(w), str(d)): s for w, d, s in plans}
    assert shapes[("3/4", "1")] == structure.Shape(6, 48, (0, 1, 2, 3))
    assert shapes[("1", "1/2")] == structure.Shape(8, 64, (1, 3))  # the two most needed layers, in order
    assert ("1", "1") not in shapes and len(plans) == 5


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, divorce_small) -> Path:
    """A tiny 4-head, 4-layer model fine-tuned on divorce_small (seconds)."""
    from transformers import AutoTokenizer

    from labelwise.model.encoders import resolve_model_name
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    root = tmp_path_factory.mktemp("prune_teacher")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name("m3e-small"))
    tiny_bert(len(tokenizer), num_attention_heads=4, num_hidden_layers=4).save_pretrained(root / "encoder")
    tokenizer.save_pretrained(root / "encoder")
    train(TrainConfig(dataset_dir=str(divorce_small), save_dir=str(root / "checkpoint"), model_name=str(root / "encoder"),
                      epochs=3, learning_rate=3e-3, batch_size=16, max_seq_length=64, long_text="truncate", progress=False, seed=1,
                      baseline=False))
    return root / "checkpoint"


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, teacher, divorce_small):
    out = tmp_path_factory.mktemp("pruned") / "prune"
    result = prune(PruneConfig(dataset_dir=str(divorce_small), params_path=str(teacher), output_dir=str(out),
                               width_mult_list=["3/4", "1/2"], depth_mult_list=["1", "1/2"], epochs=1,
                               max_train_samples=96, save_steps=3, progress=False))
    return result, out


def test_prune_writes_one_complete_checkpoint_per_shape(pruned, teacher, divorce_small):
    result, out = pruned
    names = {"width_mult_0.75", "width_mult_0.5", "width_mult_0.75_depth_mult_0.5", "width_mult_0.5_depth_mult_0.5"}
    assert {p.name for p in out.iterdir()} == names
    assert result.teacher["heads"] == 4 and result.teacher["layers"] == 4
    texts = [line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()]
    for model in result.models:
        meta = json.loads((model.folder / "labelwise.json").read_text(encoding="utf-8"))
        assert len(meta["thresholds"]) == len(meta["labels"])  # re-tuned for the pruned model
        assert meta["metrics"]["pruning"]["heads"] == model.shape.heads
        assert meta["metrics"]["dev@0.5"]["macro_f1"] == pytest.approx(model.macro_f1, abs=0.01)
        assert meta["metrics"]["dev@0.5"]["micro_f1"] == pytest.approx(model.micro_f1, abs=0.01)
        assert model.params < result.teacher["params"] and 0 < model.micro_f1 <= 100
        clf = Classifier.load(model.folder)
        assert clf.predict_proba(texts[:5]).shape == (5, len(meta["labels"]))
    half = json.loads((out / "width_mult_0.5" / "encoder" / "config.json").read_text())
    assert (half["num_attention_heads"], half["attention_head_size"], half["num_hidden_layers"]) == (2, 8, 4)
    print(result.table())  # readable: one row per shape
    assert "width_mult_0.5_depth_mult_0.5" in result.table() and "unpruned" in result.table()


def test_distillation_moves_the_pruned_models_toward_the_teacher(teacher, divorce_small, tmp_path):
    """Trained against the teacher, the half-width model agrees with it more than the bare cut does."""
    from labelwise.data.dataset import load_dataset
    from labelwise.model.checkpoint import load_checkpoint

    texts = [e.text for e in load_dataset(divorce_small).dev]
    want = Classifier.load(teacher).predict_proba(texts)

    def distance(epochs: int, learning_rate: float) -> float:
        out = tmp_path / f"e{epochs}"
        prune(PruneConfig(dataset_dir=str(divorce_small), params_path=str(teacher), output_dir=str(out),
                          width_mult_list=["1/2"], epochs=epochs, save_steps=1000, progress=False,
                          learning_rate=learning_rate))
        return float(np.abs(Classifier.load(out / "width_mult_0.5").predict_proba(texts) - want).mean())

    bare_cut = distance(1, 1e-12)  # no real update: the reordered model cut to half width
    assert distance(3, 3e-3) < 0.8 * bare_cut
    load_checkpoint(tmp_path / "e3" / "width_mult_0.5")  # loads as a plain checkpoint


def test_pruned_model_exports_serves_and_trains_further(pruned, divorce_small, tmp_path):
    from labelwise.compress.export import export_onnx
    from labelwise.serve.triton import write_triton_repo
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    _, out = pruned
    folder = out / "width_mult_0.5_depth_mult_0.5"
    report = export_onnx(folder, tmp_path / "export", quantize="int8")
    assert report.checks["fp32"]["max_abs_logit_diff"] < 1e-4 and report.checks["int8"]["decisions_agree"] > 0.8
    repo = write_triton_repo(tmp_path / "export", tmp_path / "triton")
    assert "dims: [ 20 ]" in (repo / "cls_multi_label_onnx" / "config.pbtxt").read_text().replace("[20]", "[ 20 ]")
    texts = ["婚生子由原告抚养，被告每月支付抚养费一千元。", "原、被告婚后感情尚可。"]
    np.testing.assert_allclose(Classifier.load(tmp_path / "export").predict_proba(texts),
                               Classifier.load(folder).predict_proba(texts), atol=1e-4)
    result = train(TrainConfig(dataset_dir=str(divorce_small), save_dir=str(tmp_path / "again"),
                               init_from_ckpt=str(folder), epochs=1, batch_size=16, max_seq_length=64,
                               max_train_samples=64, progress=False, baseline=False))
    config = json.loads((tmp_path / "again" / "encoder" / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_hidden_layers"]) == (2, 2)  # still the pruned shape
    assert result.classifier.predict_proba(texts).shape == (2, 20)


def test_prune_cli_refuses_bad_ratios_and_foreign_folders(teacher, divorce_small, tmp_path, capsys):
    args = ["prune", "--params_path", str(teacher), "--dataset_dir", str(divorce_small), "--output_dir",
            str(tmp_path / "prune")]
    assert main(args + ["--width_mult_list", "2/3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "2/3 × 4 attention heads" in err and "1/4, 1/2, 3/4, 1" in err
    assert "--width_mult_list" in err
    mine = tmp_path / "prune" / "width_mult_0.5"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    assert main(args + ["--width_mult_list", "1/2", "--num_train_epochs", "1"]) == 2
    assert "not written by labelwise" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "mine"


def test_prune_reports_each_shape_to_tensorboard(teacher, divorce_small, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "prune"
    prune(PruneConfig(dataset_dir=str(divorce_small), params_path=str(teacher), output_dir=str(out),
                      width_mult_list=["1/2"], epochs=1, max_train_samples=64, save_steps=2, logging_steps=1,
                      progress=False, report_to="tensorboard"))
    events = EventAccumulator(str(tmp_path / "prune_logs"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("train/w0.5")]  # the shape's distillation loss, every step
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2
    evaluated = [e.step for e in events.Scalars("dev/width_mult_0.5/macro_f1")]
    assert evaluated and evaluated == sorted(evaluated) and evaluated[-1] == steps[-1]
    assert "width_mult_0.5/thresholds/text_summary" in events.Tags()["tensors"]
