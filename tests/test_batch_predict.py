"""`labelwise predict --ray`: Ray Data over a pool of actors gives the single-process predictor's answers, in order."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from conftest import DIVORCE  # noqa: E402
from labelwise.errors import LabelwiseError, OutputExistsError
from labelwise.predict.classifier import Classifier
from labelwise.predict.ray_batch import MARKER, predict_ray, read_scores

OPTIONS = {"threshold": 0.0, "top_k_max": 3}  # every text gets its own three best labels: order shows


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def texts():
    lines = (DIVORCE / "dev.txt").read_text(encoding="utf-8").splitlines()[:60]
    return [line.split("\t")[0] for line in lines]


def assert_same(rows, texts, predictions):
    assert [r["text"] for r in rows] == texts
    assert [list(r["labels"]) for r in rows] == [p.labels for p in predictions]
    for row, prediction in zip(rows, predictions):
        np.testing.assert_allclose(row["scores"], prediction.scores, atol=1e-5)


@pytest.mark.slow
def test_ray_route_equals_the_local_predictor(local_ray, untrained_zh_checkpoint, texts, tmp_path):
    from labelwise.compress.export import export_onnx

    export = tmp_path / "export"
    export_onnx(untrained_zh_checkpoint, export)
    data = tmp_path / "data.txt"  # data.txt's format: a labelled line gives its text, blank lines are skipped
    data.write_text("\n".join(texts[:30]) + "\n\n" + "\n".join(f"{t}\t婚后有子女" for t in texts[30:]) + "\n",
                    encoding="utf-8")
    want = Classifier.load(export).predict(texts, **OPTIONS)  # (the local reader refuses the blank line)

    start = time.perf_counter()
    result = predict_ray(export, data, tmp_path / "scored.parquet", num_actors=2, batch_size=8, progress=False,
                         **OPTIONS)
    wall = time.perf_counter() - start
    assert result.rows == 60 and 0 < result.seconds <= wall  # the job's own time, inside the call's
    assert result.texts_per_second == pytest.approx(60 / result.seconds)
    assert_same(read_scores(result.output), texts, want)
    marker = json.loads((result.output / MARKER).read_text())
    assert marker["rows"] == 60 and marker["seconds"] == pytest.approx(result.seconds, abs=0.01)

    jsonl = tmp_path / "texts.jsonl"  # JSON Lines in and out, torch checkpoint, another text column
    jsonl.write_text("".join(json.dumps({"id": i, "body": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
                     encoding="utf-8")
    out = predict_ray(untrained_zh_checkpoint, jsonl, tmp_path / "scored.jsonl", num_actors=1, batch_size=16,
                      text_field="body", progress=False, **OPTIONS).output
    assert_same(read_scores(out), texts, Classifier.load(untrained_zh_checkpoint).predict(texts, **OPTIONS))

    again = predict_ray(export, data, tmp_path / "scored.parquet", num_actors=1, progress=False, **OPTIONS)
    assert again.rows == 60  # its own output folder is replaced


def test_ray_route_refuses_bad_outputs_in_one_line(untrained_zh_checkpoint, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("婚后生育一子\n", encoding="utf-8")
    with pytest.raises(LabelwiseError, match=r"must end in \.parquet or \.jsonl"):
        predict_ray(untrained_zh_checkpoint, data, tmp_path / "out.txt")
    with pytest.raises(LabelwiseError, match="input not found"):
        predict_ray(untrained_zh_checkpoint, tmp_path / "missing.txt", tmp_path / "out.parquet")
    mine = tmp_path / "mine.parquet"
    mine.mkdir()
    (mine / "notes.txt").write_text("not labelwise's", encoding="utf-8")
    with pytest.raises(OutputExistsError):
        predict_ray(untrained_zh_checkpoint, data, mine)
    with pytest.raises(LabelwiseError, match="num_actors"):
        predict_ray(untrained_zh_checkpoint, data, tmp_path / "out.parquet", num_actors=0)
