"""Batch scoring throughput: the single-process predictor vs `predict --ray` with 1 and 2 actors.

    python benchmarks/service/ray_predict.py --dataset_dir data/divorce [--model_path export] [--texts 4000] [--write]

The same texts (the first --texts training texts, written to a data.txt) go through (1) `Classifier.predict` in
this process with all cores' threads, (2) `predict_ray` with one actor of all cores' threads, (3) with one
actor per core of one thread each. Times are end to end (reading, actors starting and loading the model,
scoring, writing Parquet); Ray itself is started once before, outside the timings. Without --model_path the
model is benchmarks/service/serve_wrk.py's (m3e-small, random head, int8 export): speed does not depend on the weights.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish, run_started  # noqa: E402


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--model_path", default=None)
    p.add_argument("--precision", default="int8", choices=["fp32", "int8"])
    p.add_argument("--texts", type=int, default=4000)
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)

    import ray

    from labelwise.data.dataset import read_texts
    from labelwise.predict.classifier import Classifier
    from labelwise.predict.ray_batch import predict_ray
    from serve_wrk import default_export

    started, load_before = run_started()
    export = Path(args.model_path) if args.model_path else default_export(args.dataset_dir)
    cores = os.cpu_count() or 1
    options = {"precision": args.precision} if args.precision != "fp32" else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.txt"
        lines = (Path(args.dataset_dir) / "train.txt").read_text(encoding="utf-8").splitlines()[:args.texts]
        data.write_text("\n".join(line.split("\t")[0] for line in lines) + "\n", encoding="utf-8")
        start = time.perf_counter()
        clf = Classifier.load(export, num_threads=cores, **options)
        clf.predict(read_texts(data))
        rows.append(("single process (`labelwise predict`)", f"1 × {cores} threads", time.perf_counter() - start))
        print(rows[-1], file=sys.stderr, flush=True)
        ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR")
        for actors, threads in ((1, cores), (cores, 1)):
            result = predict_ray(export, data, Path(tmp) / f"out{actors}.parquet", num_actors=actors,
                                 threads_per_actor=threads, precision=args.precision, progress=False)
            rows.append((f"`predict --ray`, {actors} actor{'s' if actors > 1 else ''}",
                         f"{actors} × {threads} thread{'s' if threads > 1 else ''}", result.seconds))
            print(rows[-1], file=sys.stderr, flush=True)
        ray.shutdown()
    n = args.texts
    lines = [f"## Ray batch scoring: single process vs `predict --ray` ({started})", "",
             f"Command: `python benchmarks/service/ray_predict.py {' '.join(sys.argv[1:])}`  ", f"Machine: {machine()}  ",
             f"Model: {export} ({args.precision}); {n} divorce training texts; end-to-end seconds (Ray started "
             f"before the timings); load average before/after {load_before:.1f} / {os.getloadavg()[0]:.1f}", "",
             "| route | model copies × threads | seconds | texts/s |", "|---|---|---:|---:|"]
    lines += [f"| {name} | {shape} | {seconds:.1f} | {n / seconds:.0f} |" for name, shape, seconds in rows]
    return publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
