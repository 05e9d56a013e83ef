"""Pieces of the benchmark scripts whose mistakes would silently skew a published comparison."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _common  # noqa: E402,F401  (puts every concern's folder of benchmarks/ on the path)


def _tiny_ernie_checkpoint(folder: Path, layers: int = 2, hidden: int = 8, labels: int = 3) -> dict:
    import torch
    from safetensors.numpy import save_file
    from transformers import ErnieConfig, ErnieModel

    torch.manual_seed(0)
    model = ErnieModel(ErnieConfig(vocab_size=30, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                   intermediate_size=16, max_position_embeddings=64, type_vocab_size=4,
                                   use_task_id=True, task_type_vocab_size=3))
    model.save_pretrained(folder / "encoder")
    head = {"weight": np.arange(labels * hidden, dtype=np.float32).reshape(labels, hidden),
            "bias": np.ones(labels, dtype=np.float32)}
    save_file(head, str(folder / "head.safetensors"))
    return {k: v.detach().numpy() for k, v in model.state_dict().items()} | {"head." + k: v for k, v in head.items()}


def test_paddle_weight_names_and_layouts(tmp_path):
    """Every tensor lands on PaddleNLP's ErnieForSequenceClassification name; Linear weights as [in, out]."""
    pytest.importorskip("transformers")
    from vs_paddlenlp import paddle_weights

    hf = _tiny_ernie_checkpoint(tmp_path)
    paddle_weights(tmp_path, tmp_path / "w.npz", layers=2)
    got = np.load(tmp_path / "w.npz")
    per_layer = [f"self_attn.{p}_proj.{w}" for p in "qkv" for w in ("weight", "bias")] + [
        f"self_attn.out_proj.{w}" for w in ("weight", "bias")] + [
        f"{m}.{w}" for m in ("linear1", "linear2", "norm1", "norm2") for w in ("weight", "bias")]
    expected = {f"ernie.embeddings.{e}_embeddings.weight" for e in ("word", "position", "token_type", "task_type")}
    expected |= {"ernie.embeddings.layer_norm.weight", "ernie.embeddings.layer_norm.bias",
                 "ernie.pooler.dense.weight", "ernie.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    expected |= {f"ernie.encoder.layers.{i}.{p}" for i in range(2) for p in per_layer}
    assert set(got.files) == expected
    np.testing.assert_array_equal(got["ernie.encoder.layers.1.self_attn.q_proj.weight"],
                                  hf["encoder.layer.1.attention.self.query.weight"].T)
    np.testing.assert_array_equal(got["ernie.encoder.layers.0.linear1.weight"],
                                  hf["encoder.layer.0.intermediate.dense.weight"].T)
    np.testing.assert_array_equal(got["ernie.encoder.layers.0.norm2.weight"],
                                  hf["encoder.layer.0.output.LayerNorm.weight"])
    np.testing.assert_array_equal(got["ernie.embeddings.word_embeddings.weight"],
                                  hf["embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(got["classifier.weight"], hf["head.weight"].T)


def test_fixed_batches_pad_like_paddlenlp_deploy():
    """Input order kept, every batch padded to the same width, the mask marking real tokens."""
    from labelwise.predict.batching import Encoded
    from vs_paddlenlp import fixed_batches

    encoded = Encoded([[5, 6, 7], [8], [9, 9]], None, np.arange(3))
    batches = fixed_batches(encoded, pad_id=0, width=4, batch_size=2)
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0]["input_ids"], [[5, 6, 7, 0], [8, 0, 0, 0]])
    np.testing.assert_array_equal(batches[1]["input_ids"], [[9, 9, 0, 0]])
    np.testing.assert_array_equal(batches[0]["attention_mask"], [[1, 1, 1, 0], [1, 0, 0, 0]])
    assert batches[0]["input_ids"].dtype == np.int64



def tiny_ekman(goemotions_small, folder: Path) -> Path:
    """conftest's goemotions_small as an Ekman tree, by the repo's dataset builder."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "data"))
    import make_tree_datasets as trees

    folder.mkdir()
    for name, content in trees.build(goemotions_small, trees.EKMAN_GROUPS, trees.EKMAN_ROOTS).items():
        (folder / name).write_text(content, encoding="utf-8")
    return folder


def test_hierarchy_benchmark_smoke(tiny_en_encoder, goemotions_small, tmp_path, capsys):
    """benchmarks/accuracy/hierarchy.py end to end on a tiny Ekman tree: every rule but none leaves no child without its
    parent, there are figures for both levels, and the section is printed (RESULTS.md is left alone)."""
    import hierarchy

    results = Path(_common.RESULTS)
    before = results.read_bytes()
    data = tiny_ekman(goemotions_small, tmp_path / "ekman")
    rows = hierarchy.main(["--dataset_dir", str(data), "--model_name", str(tiny_en_encoder), "--epochs", "1",
                           "--max_eval", "40", "--leaf_model", "--save_dir", str(tmp_path / "run")])
    assert results.read_bytes() == before
    from labelwise.evaluation.decision import DEFAULT_RULE

    decisions = [(r["decision"].replace(" (default)", ""), r["thresholds"]) for r in rows]
    assert decisions[:4] == [("none (flat)", "tuned on dev"), ("add", "tuned on dev"), ("drop", "tuned on dev"),
                             ("sum", "tuned on dev")]
    assert [r["decision"] for r in rows[:4]].count(f"{DEFAULT_RULE} (default)") == 1
    assert ("leaves-only model, parents from leaves", "0.5") in decisions and len(rows) == 10
    for r in rows:
        assert [lv["labels"] for lv in r["levels"]] == [7, 27]
        assert r["inconsistent"] == (r["broken"] if r["decision"] == "none (flat)" else 0)
    out = capsys.readouterr().out
    assert "## Label trees, fine-tuned" in out and "| decision | thresholds | micro-F1 |" in out
    assert "Scored on test, 40 texts; 34 labels (7 + 27 per level)" in out


def test_hierarchy_benchmark_zero_shot_names(tiny_en_encoder, goemotions_small, tmp_path, capsys):
    import hierarchy

    data = tiny_ekman(goemotions_small, tmp_path / "ekman")
    rows = hierarchy.main(["--dataset_dir", str(data), "--model_name", str(tiny_en_encoder), "--zeroshot_names",
                           "--max_train", "20", "--max_eval", "30"])
    assert [r["decision"] for r in rows] == ["names: last", "names: path"]
    assert all(r["inconsistent"] == 0 for r in rows)
    assert "## Zero-shot names of tree labels" in capsys.readouterr().out



def test_few_shot_draws_are_disjoint_and_reproducible():
    """Train, dev and test of a draw never share an example, and a draw is its random seed."""
    from few_shot import split_draw

    from labelwise.data.dataset import Dataset, Example

    labels = ["a", "b"]
    ds = Dataset(labels=labels, train=[Example(f"text {i}", (labels[i % 2],)) for i in range(100)])
    train_idx, dev_idx, test_idx = split_draw(ds, per_label=2, test_size=20, seed=0)
    assert len(train_idx) == len(dev_idx) == 4 and len(test_idx) == 20
    assert not set(train_idx) & set(dev_idx) and not set(test_idx) & set(train_idx + dev_idx)
    assert all(sum(labels[k] in ds.train[i].labels for i in train_idx) == 2 for k in range(2))  # 2 per label
    assert list(split_draw(ds, per_label=2, test_size=20, seed=0)[2]) == list(test_idx)


def test_augmented_draw_keeps_the_examples_and_their_labels_and_leaves_dev_alone(tmp_path):
    """few_shot.py's few-shot+augment route: each training example, then its rewrites with the same labels."""
    from few_shot import augmented_draw

    from labelwise.data.dataset import Example, load_dataset

    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "label.txt").write_text("joy\nanger\n", encoding="utf-8")
    train = [Example("I really enjoyed the wonderful concert yesterday evening", ("joy",)),
             Example("The terrible delay made everybody furious and tired", ("anger",))]
    dev = [Example("What a lovely surprise party", ("joy",))]
    augmented_draw(tmp_path / "draw", tmp_path / "source", train, dev, create_n=2, seed=0)
    ds = load_dataset(tmp_path / "draw")
    pairs = lambda examples: [(e.text, e.labels) for e in examples]  # noqa: E731
    assert pairs(ds.train[:2]) == pairs(train) and len(ds.train) == 6  # 2 originals + 2 rewrites each
    assert {e.text for e in ds.train[2:]}.isdisjoint(e.text for e in train)
    assert [e.labels for e in ds.train[2:]] == [("joy",)] * 2 + [("anger",)] * 2
    assert pairs(ds.dev) == pairs(dev)


def test_active_learning_variants_pick_distinct_texts_and_favour_rare_labels():
    """The measured-and-rejected batch mixes of active_learning.py: n distinct rows; rare1 gives the label with
    the fewest labelled positives the largest share of the batch."""
    from active_learning import VARIANTS, variant_rank

    rng = np.random.default_rng(0)
    probs, vectors = rng.random((200, 3)), rng.normal(size=(200, 8))
    y_labelled = np.array([[1, 0, 0]] * 30 + [[0, 1, 0]] * 30 + [[0, 0, 1]] * 2)
    for name in VARIANTS:
        chosen = variant_rank(name, 20, probs, vectors, np.full(3, 0.5), y_labelled)
        assert len(chosen) == len(set(chosen.tolist())) == 20, name
    chosen = variant_rank("rare1", 20, probs, vectors, np.full(3, 0.5), y_labelled)
    nearest = np.abs(probs - 0.5).argmin(axis=1)  # the label each picked text is most doubtful about
    assert np.bincount(nearest[chosen], minlength=3)[2] >= 14  # label 2: 2 positives, 1/3 vs 1/31 of the weight


def test_few_shot_heads_read_the_stored_vectors(tmp_path, capsys):
    """benchmarks/label_efficiency/few_shot_heads.py: heads fitted on a draw's stored train vectors find labels that the vectors
    separate, and the fine-tuned head's row is the stored probabilities' score."""
    from few_shot_heads import heads, main

    rng = np.random.default_rng(0)
    centres = np.eye(3, 16) * 4

    def texts(n):
        y = np.eye(3, dtype=bool)[rng.integers(0, 3, n)]
        return (y @ centres + rng.normal(size=(n, 16))).astype(np.float16), y

    (f_train, y_train), (f_dev, y_dev), (f_test, y_test) = texts(12), texts(30), texts(200)
    stored = {"f_train": f_train, "y_train": y_train, "f_dev": f_dev, "y_dev": y_dev, "f_test": f_test,
              "y_test": y_test, "f_names": centres.astype(np.float16), "thresholds": np.full(3, 0.5),
              "dev": y_dev * 0.8 + 0.1, "test": y_test * 0.8 + 0.1}  # a head that is always right
    np.savez(tmp_path / "draw0-few-shot.npz", **stored)
    found = heads(np.load(tmp_path / "draw0-few-shot.npz"))
    for name in ("nearest label mean", "logistic regression"):
        dev, test = found[name]
        assert dev.shape == (30, 3) and test.shape == (200, 3)
        assert (test.argmax(1) == y_test.argmax(1)).mean() > 0.9, name  # each text's best label is its own
    table = main(["--probs", str(tmp_path)])
    assert "| logistic regression |" in table and "Draws: draw0" in table
    assert "| fine-tuned head | 100.00 | 100.00 |" in table


def test_small_data_benchmark_smoke(tiny_en_encoder, goemotions_small, tmp_path, capsys):
    """benchmarks/accuracy/small_data.py end to end on a tiny encoder: the model and the baseline are scored on test, the
    rarest labels are the ones with the fewest training examples, and RESULTS.md is left alone."""
    import small_data

    results = Path(_common.RESULTS)
    before = results.read_bytes()
    out_json = tmp_path / "sd.json"
    small_data.main(["--dataset_dir", str(goemotions_small), "--model_name", str(tiny_en_encoder), "--size", "60",
                     "--dev_size", "30", "--draws", "1", "--out", str(out_json)])
    assert results.read_bytes() == before
    import json

    draw = json.loads(out_json.read_text())[0]
    assert draw["train"] == 60 and draw["test"] == 80
    assert [r["train"] for r in draw["rarest"]] == sorted(r["train"] for r in draw["rarest"])
    draw["default"]["micro"] = 12.5  # a second call keeps the draws already in --out and runs only the new ones
    out_json.write_text(json.dumps([draw]))
    section = small_data.main(["--dataset_dir", str(goemotions_small), "--model_name", str(tiny_en_encoder),
                               "--size", "60", "--dev_size", "30", "--draws", "2", "--out", str(out_json)])
    draws = json.loads(out_json.read_text())
    assert [d["draw"] for d in draws] == [0, 1] and draws[0]["default"]["micro"] == 12.5
    assert "2 draws (seeds 0, 1)" in section
    n_labels = len((goemotions_small / "label.txt").read_text(encoding="utf-8").split())
    for route in ("TF-IDF + linear SVM", "default"):
        rarest = draw[route]["rarest"]
        assert len(rarest) == 3 and all(0 <= f <= 1 for f in rarest)
        assert 0 < draw[route]["micro"] <= 100  # the route predicted some labels right
        # macro is the mean F1 over every label, so it holds at least the rarest three's share
        assert draw[route]["macro"] / 100 * n_labels >= sum(rarest) - 1e-9
    assert draw["default"] != draw["TF-IDF + linear SVM"]
    text = capsys.readouterr().out
    assert "## Small data: goemotions_small" in text and "| default |" in text and "Rarest 3 labels" in text


def test_the_results_page_is_rebuilt_from_the_history_and_its_links_resolve(tmp_path, monkeypatch):
    import re

    import results_page
    from _common import append_results
    from test_docs import anchors

    log = results_page.LOG.read_text(encoding="utf-8")
    assert results_page.PAGE.read_text(encoding="utf-8") == results_page.page(results_page.records(log)), \
        "benchmarks/RESULTS.md is stale: run python benchmarks/results_page.py"
    targets = anchors(log)
    links = re.findall(r"\]\(history/log\.md#([^)]+)\)", results_page.PAGE.read_text(encoding="utf-8"))
    assert links and set(links) <= targets, sorted(set(links) - targets)[:3]
    # --write: the section goes to the history, and the page shows it in place of the older run of its benchmark
    for name in ("LOG", "RECORDS", "PAGE"):
        monkeypatch.setattr(results_page, name, tmp_path / getattr(results_page, name).name)
    results_page.LOG.write_text("# h\n\n## Soak: a test (2026-01-01 00:00 UTC)\n\nTargets: old.\n", encoding="utf-8")
    append_results("## Soak: a test (2026-12-31 00:00 UTC)\n\nCommand: `x`  \nTargets: **met**.\n")
    page = results_page.PAGE.read_text(encoding="utf-8")
    assert "2026-12-31" in page and "Targets: old." not in page and "| `x` |" in page
    assert results_page.LOG.read_text(encoding="utf-8").count("## Soak: a test") == 2  # nothing deleted
