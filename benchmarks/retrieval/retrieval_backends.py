"""Where a retrieval index keeps its vectors: the index folder (exact search), faiss HNSW, Milvus Lite.

    python benchmarks/retrieval/retrieval_backends.py --dataset_dir data/divorce [--write]
    python benchmarks/retrieval/retrieval_backends.py --max_train 200 --max_dev 50 --scale 1000   # a smoke run, seconds

1. Divorce with a real encoder (--encoder, default m3e-small): one index of the training texts (+ label names)
   is built with `build_index` (embedding, k and thresholds tuned on dev); the same vectors then go into each
   store: the folder (exact search), faiss HNSW (`approximate`) and a Milvus Lite collection (`vector_db`).
   Per store: the time to make it searchable from the vectors (the embedding, shared by all, is reported
   once), search ms per dev text (vectors already embedded, batches of 32), ms per dev text through
   `Classifier.predict` (embedding included), and the share of dev texts whose predicted label set is
   identical to exact search's.
2. Scaling (synthetic unit vectors, --dim, sizes --scale): per store and size, in a fresh process each: the
   time to insert the vectors, search ms per query (--queries queries in batches of 32, k 10), recall@10
   against exact search, the process's memory beyond the vectors themselves, and disk.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish, run_started  # noqa: E402

STORES = ("exact", "faiss", "milvus-lite")
BATCH, K = 32, 10


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--encoder", default="m3e-small", help="sentence encoder or checkpoint whose vectors are indexed")
    p.add_argument("--max_train", type=int, default=None, help="index only the first N training texts")
    p.add_argument("--max_dev", type=int, default=None, help="query with only the first N dev texts")
    p.add_argument("--scale", default="10000,100000,1000000", help="synthetic index sizes (comma-separated; "
                   "empty: no scaling table)")
    p.add_argument("--dim", type=int, default=512, help="dimension of the synthetic vectors (m3e-small: 512)")
    p.add_argument("--queries", type=int, default=1000, help="synthetic queries per size")
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    p.add_argument("--one", nargs=2, metavar=("STORE", "SIZE"), help=argparse.SUPPRESS)  # one scaling job
    return p.parse_args(argv)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def disk_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


# ---- the stores, made from vectors in memory ---------------------------------------------------------------

def make_store(kind: str, vectors: np.ndarray, scratch: Path):
    from labelwise.predict.vector_store import ExactStore, FaissStore, MilvusStore, collection_name

    if kind == "exact":
        return ExactStore(vectors)
    if kind == "faiss":
        return FaissStore(vectors)
    store = MilvusStore.create(str(scratch / "milvus.db"), collection_name(scratch / "bench"), vectors.shape[1],
                               "benchmark")
    store.insert(vectors)
    store.check(size=len(vectors), dim=vectors.shape[1], encoder="benchmark", where="benchmark")  # loads it
    return store


def search_ms(store, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    store.search(queries[:BATCH], k)  # warm-up
    start, found = time.perf_counter(), []
    for i in range(0, len(queries), BATCH):
        found.append(store.search(queries[i:i + BATCH], k)[0])
    return 1000 * (time.perf_counter() - start) / len(queries), np.concatenate(found)


# ---- 1. divorce ----------------------------------------------------------------------------------------------

def subset(dataset_dir: Path, to: Path, max_train: int | None, max_dev: int | None) -> Path:
    to.mkdir()
    for name, limit in (("train.txt", max_train), ("dev.txt", max_dev), ("label.txt", None)):
        lines = (dataset_dir / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (to / name).write_text("".join(lines[:limit] if limit else lines), encoding="utf-8")
    return to


def in_milvus(index_dir: Path, to: Path, db: Path) -> float:
    """A copy of a file index whose vectors are in a new Milvus Lite collection; seconds to make it."""
    from labelwise.predict.retrieval import MILVUS_FORMAT, read_index, write_index
    from labelwise.predict.vector_store import MilvusStore, collection_name

    info, vectors, labels, center, rows = read_index(index_dir)
    start = time.perf_counter()
    store = MilvusStore.create(str(db), collection_name(to), vectors.shape[1], str(info["encoder"]))
    store.insert(vectors)
    info.update(format_version=MILVUS_FORMAT, vector_db={"uri": str(db), "collection": store.collection})
    write_index(to, info, None, labels, center, rows)
    return time.perf_counter() - start


def divorce_rows(args, scratch: Path) -> tuple[list[tuple], dict]:
    from labelwise.data.dataset import load_dataset
    from labelwise.predict.classifier import Classifier
    from labelwise.predict.retrieval import Encoder, centred
    from labelwise.training.index import build_index

    data = Path(args.dataset_dir)
    if args.max_train or args.max_dev:
        data = subset(data, scratch / "data", args.max_train, args.max_dev)
    dev = [e.text for e in load_dataset(data).dev]
    start = time.perf_counter()
    exact = build_index(args.encoder, str(data), str(scratch / "exact"), vector_db="file", progress=False)
    embed_s = time.perf_counter() - start
    encoder = Encoder(exact.backend.encoder, exact.tokenizer, exact.meta)
    info = json.loads((scratch / "exact" / "index.json").read_text(encoding="utf-8"))
    shutil.copytree(scratch / "exact", scratch / "faiss")
    (scratch / "faiss" / "index.json").write_text(json.dumps({**info, "approximate": True}), encoding="utf-8")
    milvus_s = in_milvus(scratch / "exact", scratch / "milvus-lite", scratch / "milvus.db")
    queries = centred(Classifier(*encoder).features(dev, batch_size=BATCH), exact.backend.center)
    want = None
    rows = []
    for kind in STORES:
        start = time.perf_counter()
        clf = Classifier.load(scratch / kind, encoder=encoder)  # faiss builds its graph here, Milvus loads
        build_s = time.perf_counter() - start + (milvus_s if kind == "milvus-lite" else 0.0)
        ms, _ = search_ms(clf.backend.store, queries, clf.backend.k)
        start = time.perf_counter()
        labels = [frozenset(p.labels) for p in clf.predict(dev, batch_size=BATCH)]
        predict_ms = 1000 * (time.perf_counter() - start) / len(dev)
        if want is None:
            want = labels
        same = 100 * np.mean([a == b for a, b in zip(labels, want)])
        rows.append((kind, build_s, ms, predict_ms, same))
    return rows, {"size": info["size"], "dim": info["dim"], "k": info["k"], "dev": len(dev), "embed_s": embed_s,
                  "dataset": Path(args.dataset_dir).name + (" (subset)" if data != Path(args.dataset_dir) else "")}


# ---- 2. scaling (one store, one size, in its own process) ----------------------------------------------------

def synthetic(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, 100_000):  # in chunks: 1M × 512 float64 would need 4 GB at once
        chunk = rng.standard_normal((min(100_000, n - i), dim), dtype=np.float32)
        x[i:i + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return x


def one_job(kind: str, n: int, dim: int, n_queries: int) -> dict:
    from labelwise.predict.search import top_k_dot

    vectors = synthetic(n, dim, seed=0)
    rng = np.random.default_rng(1)  # queries near stored vectors, so that neighbours mean something
    queries = vectors[rng.integers(0, n, n_queries)] + 0.5 * synthetic(n_queries, dim, seed=2)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = top_k_dot(queries, vectors, K)[0]
    with tempfile.TemporaryDirectory(prefix="retrieval-backends-") as tmp:
        before = rss_mib()
        start = time.perf_counter()
        store = make_store(kind, vectors, Path(tmp))
        insert_s = time.perf_counter() - start
        ms, found = search_ms(store, queries, K)
        extra = rss_mib() - before
        recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)]))
        disk = disk_mib(Path(tmp) / "milvus.db") if kind == "milvus-lite" else n * dim * 4 / 2**20
    return {"store": kind, "size": n, "insert_s": insert_s, "ms": ms, "recall": recall, "extra_mib": extra,
            "vectors_mib": n * dim * 4 / 2**20, "disk_mib": disk}


def scaling_rows(args) -> list[dict]:
    sizes = [int(s) for s in args.scale.split(",") if s.strip()]
    rows = []
    for n in sizes:
        for kind in STORES:
            cmd = [sys.executable, __file__, "--one", kind, str(n), "--dim", str(args.dim), "--queries",
                   str(args.queries)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{kind} at {n:,}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                rows.append({"store": kind, "size": n, "failed": True})
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{kind} at {n:,}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


# ---- the section ---------------------------------------------------------------------------------------------

def format_section(args, divorce: list[tuple], about: dict, scaling: list[dict], started: str,
                   load_before: float) -> str:
    cmd = "python benchmarks/retrieval/retrieval_backends.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
    lines = [f"## Retrieval: where the vectors live, file / faiss / Milvus Lite ({started})", "",
             f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
             f"Load average before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f}", "",
             f"{about['dataset']}: {about['size']:,} indexed texts ({args.encoder}, {about['dim']} dimensions, k "
             f"{about['k']}), {about['dev']:,} dev texts as queries. Embedding the training texts and tuning k and "
             f"thresholds (shared by every store): {about['embed_s']:.0f} s. Build: from vectors in memory to a "
             "searchable store. Search: the store alone, batches of 32; predict: `Classifier.predict`, embedding "
             "included. Same labels: dev texts whose predicted label set equals exact search's.", "",
             "| store | build s | search ms/text | predict ms/text | same labels as exact |",
             "|---|---:|---:|---:|---:|"]
    for kind, build_s, ms, predict_ms, same in divorce:
        lines.append(f"| {kind} | {build_s:.2f} | {ms:.3f} | {predict_ms:.2f} | {same:.2f}% |")
    if scaling:
        lines += ["", f"Scaling: synthetic unit vectors ({args.dim} dimensions), {args.queries} queries near stored "
                  f"vectors, k {K}, batches of 32, each store and size in a fresh process. Memory: the process's "
                  "growth while building and searching, beyond the vectors themselves (numpy, listed).", "",
                  "| vectors | store | insert s | search ms/query | recall@10 vs exact | extra memory MiB | "
                  "vectors MiB | on disk MiB |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in scaling:
            if r.get("failed"):
                lines.append(f"| {r['size']:,} | {r['store']} | failed (see the run's stderr) | | | | | |")
                continue
            lines.append(f"| {r['size']:,} | {r['store']} | {r['insert_s']:.2f} | {r['ms']:.3f} | {r['recall']:.3f} "
                         f"| {r['extra_mib']:.0f} | {r['vectors_mib']:.0f} | {r['disk_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> str | None:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(one_job(args.one[0], int(args.one[1]), args.dim, args.queries)))
        return None
    started, load_before = run_started()
    with tempfile.TemporaryDirectory(prefix="retrieval-backends-") as tmp:
        divorce, about = divorce_rows(args, Path(tmp))
    scaling = scaling_rows(args)
    return publish(format_section(args, divorce, about, scaling, started, load_before), args.write)


if __name__ == "__main__":
    main()
