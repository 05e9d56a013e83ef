"""Triton model repository: configs parse against Triton's own schema, and the Python-backend models'
execute() give the same labels as the Classifier when chained with the ONNX model (no server here).

The schema is ``model_config.proto`` as compiled in the ``tritonclient`` package (its
``grpc/model_config_pb2.py``, loaded by path so that grpcio is not needed).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from conftest import FakeTensor
from labelwise.cli.main import main
from labelwise.compress.export import export_onnx
from labelwise.errors import LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.serve.triton import graph_signature, write_triton_repo

TEXTS = ["婚生子杨某甲由原告抚养，被告每月支付抚养费一千元。", "原、被告婚后感情尚可，后因生活琐事发生矛盾。",
         "2011年5月1日在昌邑市山前御景园小区按揭共同购房77.74平方米。", "ok"]
MODELS = ("cls_multi_label", "cls_multi_label_tokenizer", "cls_multi_label_onnx", "cls_multi_label_postprocess")


def _model_config_schema():
    import tritonclient  # a dev dependency (`make test` installs it): it ships Triton's model_config schema

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def export_dir(tiny_zh_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton_export") / "export"
    export_onnx(tiny_zh_checkpoint, folder)
    return folder


@pytest.fixture(scope="module")
def repo(export_dir, tmp_path_factory):
    return write_triton_repo(export_dir, tmp_path_factory.mktemp("triton") / "repo", max_batch_size=16)


def _parse(path: Path):
    from google.protobuf import text_format

    schema = _model_config_schema()
    return text_format.Parse(path.read_text(encoding="utf-8"), schema.ModelConfig())


def test_configs_parse_and_come_from_the_graph(repo, export_dir):
    configs = {name: _parse(repo / name / "config.pbtxt") for name in MODELS}
    assert all((repo / name / "1").is_dir() for name in MODELS)
    onnx_config = configs["cls_multi_label_onnx"]
    assert onnx_config.platform == "onnxruntime_onnx" and onnx_config.max_batch_size == 16
    inputs, outputs, dynamic = graph_signature(export_dir / "model.onnx")
    assert dynamic
    assert [(i.name, list(i.dims)) for i in onnx_config.input] == [(t["name"], t["dims"]) for t in inputs]
    assert [i.name for i in onnx_config.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [(o.name, list(o.dims)) for o in onnx_config.output] == [("logits", [20])]
    schema = _model_config_schema()
    assert all(i.data_type == schema.TYPE_INT64 for i in onnx_config.input)
    # the tokenizer gives exactly what the ONNX model takes; the postprocess takes what it gives
    tokenizer = configs["cls_multi_label_tokenizer"]
    assert tokenizer.backend == "python"
    assert [o.name for o in tokenizer.output] == [i.name for i in onnx_config.input]
    assert {p: v.string_value for p, v in tokenizer.parameters.items()} == {"max_seq_length": "64", "pad_token_id": "0"}
    assert [i.name for i in configs["cls_multi_label_postprocess"].input] == ["logits"]
    ensemble = configs["cls_multi_label"]
    assert ensemble.platform == "ensemble"
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == list(MODELS[1:])
    assert dict(steps[1].input_map) == {n: n for n in ("input_ids", "attention_mask", "token_type_ids")}
    assert dict(steps[2].output_map) == {"RESULT": "RESULT", "PROBS": "PROBS"}
    assert [o.name for o in ensemble.output] == ["RESULT", "PROBS"] and list(ensemble.output[1].dims) == [20]



def _load_model(repo: Path, name: str):
    folder = repo / name
    spec = importlib.util.spec_from_file_location(f"{name}_model", folder / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = _parse(folder / "config.pbtxt")
    from google.protobuf import json_format

    model.initialize({"model_config": json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)),
                      "model_repository": str(folder), "model_version": "1"})
    return model


def test_python_models_chained_with_onnx_match_the_classifier(repo, export_dir, pb_utils):
    import onnxruntime as ort

    tokenizer = _load_model(repo, "cls_multi_label_tokenizer")
    postprocess = _load_model(repo, "cls_multi_label_postprocess")
    session = ort.InferenceSession(str(repo / "cls_multi_label_onnx" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    text = np.array([t.encode("utf-8") for t in TEXTS], dtype=np.object_).reshape(-1, 1)
    request = {"TEXT": FakeTensor("TEXT", text)}
    [encoded] = tokenizer.execute([request])
    assert encoded.error is None and set(encoded.outputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert encoded.outputs["input_ids"].shape[0] == len(TEXTS)
    logits = session.run(["logits"], encoded.outputs)[0]
    [result] = postprocess.execute([{"logits": FakeTensor("logits", logits)}])
    got = [json.loads(row[0].decode("utf-8")) for row in result.outputs["RESULT"]]
    clf = Classifier.load(export_dir)
    want = clf.predict(TEXTS)
    assert [g["label"] for g in got] == [p.labels for p in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g["confidence"], w.scores, atol=1e-5)
    np.testing.assert_allclose(result.outputs["PROBS"], clf.predict_proba(TEXTS), atol=1e-5)


def test_tokenizer_model_reports_bad_utf8_as_an_error_response(repo, pb_utils):
    tokenizer = _load_model(repo, "cls_multi_label_tokenizer")
    bad = {"TEXT": FakeTensor("TEXT", np.array([b"\xff\xfe"], dtype=np.object_).reshape(-1, 1))}
    good = {"TEXT": FakeTensor("TEXT", np.array(["ok".encode()], dtype=np.object_).reshape(-1, 1))}
    responses = tokenizer.execute([bad, good])
    assert "tokenizer" in responses[0].error.message() and responses[1].error is None


def test_postprocess_top_k_min_and_thresholds(export_dir, tmp_path, pb_utils):
    repo = write_triton_repo(export_dir, tmp_path / "repo", top_k_min=2)
    postprocess = _load_model(repo, "cls_multi_label_postprocess")
    logits = np.full((1, 20), -10.0, dtype=np.float32)  # every probability ≈ 0: below every threshold
    logits[0, 7], logits[0, 3] = -1.0, -2.0
    [result] = postprocess.execute([{"logits": FakeTensor("logits", logits)}])
    labels = Classifier.load(export_dir).labels
    assert json.loads(result.outputs["RESULT"][0][0])["label"] == [labels[7], labels[3]]


def test_export_cli_writes_a_triton_repository(tiny_zh_checkpoint, export_dir, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["export", "--model_path", str(export_dir), "--triton", str(repo), "--triton_name", "divorce"]) == 0
    assert "divorce" in capsys.readouterr().out
    assert _parse(repo / "divorce" / "config.pbtxt").ensemble_scheduling.step[0].model_name == "divorce_tokenizer"
    assert _parse(repo / "divorce_onnx" / "config.pbtxt").instance_group[0].kind == \
        _model_config_schema().ModelInstanceGroup.KIND_CPU
    with pytest.raises(LabelwiseError, match="--quantize int8"):
        write_triton_repo(export_dir, tmp_path / "int8", precision="int8")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x", encoding="utf-8")
    assert main(["export", "--model_path", str(export_dir), "--triton", str(mine)]) == 2
    assert (mine / "keep.txt").exists()


def serve_reader(repo: Path, pb_utils, texts) -> tuple[list[dict], np.ndarray]:
    """The reader model of ``repo`` answering one request for ``texts``, its ONNX model and post-processing reached
    through (faked) business-logic scripting: (RESULT rows, PROBS)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(repo / "cls_multi_label_onnx" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    postprocess = _load_model(repo, "cls_multi_label_postprocess")

    def run_postprocess(inputs):
        [response] = postprocess.execute([{"logits": FakeTensor("logits", inputs["logits"])}])
        return response.outputs

    pb_utils.server.models = {"cls_multi_label_onnx": lambda inputs: dict(zip(["logits"], session.run(None, inputs))),
                              "cls_multi_label_postprocess": run_postprocess}
    reader = _load_model(repo, "cls_multi_label")
    text = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(-1, 1)
    [response] = reader.execute([{"TEXT": FakeTensor("TEXT", text)}])
    assert response.error is None
    return [json.loads(row[0].decode("utf-8")) for row in response.outputs["RESULT"]], response.outputs["PROBS"]


def test_a_windowed_model_is_read_in_windows_by_the_reader_model(export_dir, tmp_path, pb_utils):
    """long_text slide: Triton's entry is the reader model, which windows, pools and decides as the Classifier."""
    windowed = tmp_path / "windowed"
    import shutil

    shutil.copytree(export_dir, windowed)
    meta = json.loads((windowed / "labelwise.json").read_text(encoding="utf-8"))
    meta.update(long_text="slide", max_seq_length=12, window_pool="max")  # 12 tokens: the long texts have windows
    (windowed / "labelwise.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    repo = write_triton_repo(windowed, tmp_path / "repo", max_batch_size=4)
    assert not (repo / "cls_multi_label_tokenizer").exists()
    entry = _parse(repo / "cls_multi_label" / "config.pbtxt")
    assert entry.backend == "python" and [o.name for o in entry.output] == ["RESULT", "PROBS"]
    texts = TEXTS + ["原告与被告经人介绍相识，婚后生育一子，现双方感情确已破裂，原告要求离婚并由其抚养孩子。" * 3]
    got, probs = serve_reader(repo, pb_utils, texts)
    windows = sum(shape["input_ids"][0] for model, shape in pb_utils.server.calls if model.endswith("_onnx"))
    assert windows > len(texts) + 5  # long texts went as several windows, in passes of at most 4
    assert all(shape["input_ids"][0] <= 4 for model, shape in pb_utils.server.calls if model.endswith("_onnx"))
    clf = Classifier.load(windowed)
    assert clf.long_text == "slide"
    np.testing.assert_allclose(probs, clf.predict_proba(texts), atol=1e-5)
    assert [g["label"] for g in got] == [p.labels for p in clf.predict(texts)]
    reader = _load_model(repo, "cls_multi_label")  # a bad request is an error response; the next one is answered
    bad = {"TEXT": FakeTensor("TEXT", np.array([b"\xff\xfe"], dtype=np.object_).reshape(-1, 1))}
    good = {"TEXT": FakeTensor("TEXT", np.array(["ok".encode()], dtype=np.object_).reshape(-1, 1))}
    responses = reader.execute([bad, good])
    assert "reader" in responses[0].error.message() and responses[1].error is None
