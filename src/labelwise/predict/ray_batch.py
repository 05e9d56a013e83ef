"""Batch scoring beyond one process: Ray Data streams the texts through a pool of actors, each holding the model.

    labelwise predict --ray --model_path export --data_file texts.jsonl --output_file scored.parquet --num_actors 4
    predict_ray("export", "texts.txt", "scored.parquet", num_actors=2)

Input: a text file in data.txt's format (one text per line; a ``text\\tlabels`` line gives its text; blank lines
are skipped), JSON Lines or Parquet with a ``text`` column (``text_field`` names another), or a folder of such
files. Output: a folder of Parquet (``.parquet``) or JSON Lines (``.jsonl``) files, one per block, in
input order, with the columns ``text``, ``labels`` (list of names) and ``scores`` (their probabilities), plus
``_SUCCESS.json`` saying what made it. It is written beside its final place and renamed into it when whole.

Ray starts on this machine unless ``address`` names a cluster (``"auto"`` inside one, ``"ray://head:10001"``
from outside); on a cluster, ``model_path``, input and output must be paths every node can read and write
(shared or object storage), and the nodes need labelwise installed. Needs ``pip install 'labelwise[ray]'``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from labelwise.errors import LabelwiseError
from labelwise.files import check_outputs

MARKER = "_SUCCESS.json"

__all__ = ["RayPredictResult", "predict_ray", "read_scores"]


@dataclass
class RayPredictResult:
    output: Path
    rows: int
    seconds: float
    num_actors: int

    @property
    def texts_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class _Scorer:
    """One Ray actor: loads the model once, then labels batch after batch."""

    def __init__(self, model_path: str, backend: str, precision: str, num_threads: int, options: dict,
                 text_field: str):
        from labelwise.predict.classifier import Classifier

        self.classifier = Classifier.load(model_path, backend=backend, device="cpu", num_threads=num_threads,
                                          precision=precision)
        self.options, self.text_field = options, text_field

    def __call__(self, batch):
        import pandas as pd

        texts = [str(t) for t in batch[self.text_field]]
        predictions = self.classifier.predict(texts, **self.options)
        return pd.DataFrame({"text": texts, "labels": [p.labels for p in predictions],
                             "scores": [[round(float(s), 6) for s in p.scores] for p in predictions]})


def _text_of_line(row: dict) -> dict:
    return {"text": row["text"].rstrip("\r").split("\t", 1)[0]}


def _has_text(row: dict) -> bool:
    return bool(row["text"].strip())


IO = {"num_cpus": 0}  # reading and writing are light: they must not wait for cores the actors hold


def _read(ray, source: str, text_field: str):
    path = Path(source)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    suffix = files[0].suffix.lower() if files else ""
    if suffix == ".parquet":
        return ray.data.read_parquet(source, columns=[text_field], **IO), text_field
    if suffix in (".jsonl", ".json"):
        return ray.data.read_json(source, lines=suffix == ".jsonl", **IO), text_field
    ds = ray.data.read_text(source, drop_empty_lines=True, **IO).map(_text_of_line, **IO)
    return ds.filter(_has_text, **IO), "text"


def predict_ray(model_path: str | os.PathLike, data_file: str | os.PathLike, output: str | os.PathLike, *,
                num_actors: int = 2, threads_per_actor: int = 1, batch_size: int = 256, address: str | None = None,
                backend: str = "auto", precision: str = "fp32", text_field: str = "text",
                threshold: float | None = None, top_k_min: int = 0, top_k_max: int | None = None,
                max_seq_length: int | None = None, long_text: str | None = None, progress: bool = True,
                hierarchy: str = "consistent") -> RayPredictResult:
    """Label every text of ``data_file`` with ``num_actors`` model copies; write ``output`` (a folder)."""
    try:
        import ray
    except ImportError:
        raise LabelwiseError("the Ray route needs Ray Data: pip install 'labelwise[ray]'") from None
    from labelwise.predict import backends

    for name, value in (("num_actors", num_actors), ("threads_per_actor", threads_per_actor),
                        ("batch_size", batch_size)):
        if value < 1:
            raise LabelwiseError(f"`{name}` must be at least 1, got {value}")
    output = Path(output)
    if output.suffix.lower() not in (".parquet", ".jsonl"):
        raise LabelwiseError(f"{output}: the output name must end in .parquet or .jsonl (it becomes a folder of "
                             "such files)")
    if not Path(data_file).exists():
        raise LabelwiseError(f"{data_file}: input not found (a file, or a folder of files)")
    (output,) = check_outputs([output], [data_file], marker=MARKER)
    backend = backends.detect(model_path) if backend == "auto" else backend  # fails early on a bad path
    backends.check_precision(backends.get(backend), precision, model_path)  # the loader's rule, before Ray starts

    if not ray.is_initialized():
        local = {} if address else {"num_cpus": max(os.cpu_count() or 1, num_actors * threads_per_actor)}
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", **local)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come out in input order
    context.enable_progress_bars = progress

    start = time.perf_counter()
    ds, field = _read(ray, str(data_file), text_field)
    options = {"threshold": threshold, "top_k_min": top_k_min, "top_k_max": top_k_max, "batch_size": 32,
               "max_seq_length": max_seq_length, "long_text": long_text, "hierarchy": hierarchy}
    scored = ds.map_batches(_Scorer, fn_constructor_kwargs={
        "model_path": str(Path(model_path).resolve()), "backend": backend, "precision": precision,
        "num_threads": threads_per_actor, "options": options, "text_field": field},
        batch_size=batch_size, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=threads_per_actor)
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if output.suffix.lower() == ".parquet":
        scored.write_parquet(str(partial), ray_remote_args=IO)
    else:
        scored.write_json(str(partial), ray_remote_args=IO)
    rows = _count_rows(partial)
    seconds = time.perf_counter() - start
    (partial / MARKER).write_text(json.dumps({
        "made_by": "labelwise predict --ray", "model_path": str(model_path), "data_file": str(data_file),
        "rows": rows, "seconds": round(seconds, 2), "num_actors": num_actors}, ensure_ascii=False, indent=1))
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return RayPredictResult(output, rows, seconds, num_actors)


def _rows_written(folder: Path):
    """The rows of an output folder, in order (file names carry the block order)."""
    for path in sorted(folder.iterdir()):
        if path.name == MARKER:
            continue
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(path).to_pylist()
        elif path.suffix in (".json", ".jsonl"):
            with path.open(encoding="utf-8") as handle:
                yield from (json.loads(line) for line in handle if line.strip())


def _count_rows(folder: Path) -> int:
    """Rows in an output folder, from Parquet footers or JSON line counts: nothing is parsed twice."""
    rows = 0
    for path in folder.iterdir():
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows += pq.ParquetFile(path).metadata.num_rows
        elif path.suffix in (".json", ".jsonl") and path.name != MARKER:
            with path.open("rb") as handle:
                rows += sum(1 for line in handle if line.strip())
    return rows


def read_scores(output: str | os.PathLike) -> list[dict]:
    """All rows of an output folder of :func:`predict_ray`, in input order (small outputs; for tests)."""
    return list(_rows_written(Path(output)))
