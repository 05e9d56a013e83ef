"""HTTP load test: the service with dynamic batching on vs off, under 1, 8 and 32 concurrent clients.

    python benchmarks/service/serve_load.py --model_path runs/deploy/bench-export --dataset_dir data/divorce [--write]

Starts two servers (subprocesses, 127.0.0.1, free ports): one with dynamic batching, one without.
Each client sends one dev text per request (POST /predict) in a loop, for --seconds per setting and
server, cut into --slices turns that alternate between the two servers so both see the same load. Reports
requests/s, p50/p99 latency and errors; --write appends the Markdown section to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish, start_server, verdict  # noqa: E402
from labelwise.data.dataset import read_examples, read_labels


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_path", required=True, help="export folder (or checkpoint) to serve")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8", "fp16"])
    p.add_argument("--dataset_dir", default="data/divorce", help="texts come from its dev.txt")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--seconds", type=float, default=15.0, help="per setting and server")
    p.add_argument("--slices", type=int, default=3, help="the seconds are cut into this many on/off turns")
    p.add_argument("--max_batch_size", type=int, default=32)
    p.add_argument("--max_wait_ms", type=float, default=0.0)
    p.add_argument("--num_threads", type=int, default=None)
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    return p.parse_args(argv)


def start_labelwise(args, batching: bool):
    flags = ["--model_path", args.model_path, "--max_batch_size", str(args.max_batch_size), "--max_wait_ms",
             str(args.max_wait_ms), "--log_level", "warning"]
    if args.model_path and not (Path(args.model_path) / "head.safetensors").exists():
        flags += ["--precision", args.precision]
    if args.num_threads:
        flags += ["--num_threads", str(args.num_threads)]
    if not batching:
        flags.append("--no_dynamic_batching")
    return start_server(flags)


async def drive(url: str, texts: list[str], clients: int, seconds: float) -> dict:
    """``clients`` loops posting one text each until the time is up; latencies of completed requests."""
    latencies, errors = [], 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        for text in texts[:4]:  # warm-up
            await http.post("/predict", json={"texts": [text]})
        before = (await http.get("/health")).json()["stats"]
        deadline = time.perf_counter() + seconds

        async def client(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    response = await http.post("/predict", json={"texts": [texts[i % len(texts)]]})
                    ok = response.status_code == 200 and len(response.json()["predictions"]) == 1
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1
                i += clients

        start = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
        after = (await http.get("/health")).json()["stats"]
    return {"clients": clients, "latencies": latencies, "elapsed": elapsed, "errors": errors,
            "passes": after["forward_passes"] - before["forward_passes"], "texts": after["texts"] - before["texts"]}


def combine(slices: list[dict]) -> dict:
    """One row from the time slices of one setting."""
    latencies = [x for s in slices for x in s["latencies"]]
    ms = 1000 * np.asarray(latencies) if latencies else np.zeros(1)
    return {"clients": slices[0]["clients"], "requests": len(latencies),
            "rps": len(latencies) / sum(s["elapsed"] for s in slices), "errors": sum(s["errors"] for s in slices),
            "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "per_pass": sum(s["texts"] for s in slices) / max(1, sum(s["passes"] for s in slices))}


def model_cost(args, texts: list[str], sizes=(1, 8, 32), rounds: int = 2) -> dict[int, float]:
    """Milliseconds of model time per text at each batch size, without HTTP (best of ``rounds``)."""
    from labelwise.predict.classifier import Classifier

    options = {} if (Path(args.model_path) / "head.safetensors").exists() else {"precision": args.precision}
    clf = Classifier.load(args.model_path, num_threads=args.num_threads, **options)
    clf.predict_proba(texts[:8])
    best = {size: float("inf") for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            start = time.perf_counter()
            for i in range(0, len(texts), size):
                clf.predict_proba(texts[i:i + size], batch_size=size)
            best[size] = min(best[size], 1000 * (time.perf_counter() - start) / len(texts))
    return best


def main(argv=None) -> str:
    args = parse_args(argv)
    labels = read_labels(Path(args.dataset_dir) / "label.txt")
    texts = [e.text for e in read_examples(Path(args.dataset_dir) / "dev.txt", labels)]
    load_before = os.getloadavg()[0]
    cost = model_cost(args, texts[:64])
    print("model time per text: " + ", ".join(f"batch {k}: {v:.1f} ms" for k, v in cost.items()), file=sys.stderr)
    servers = {True: start_labelwise(args, True), False: start_labelwise(args, False)}
    results = {True: [], False: []}
    try:
        for clients in args.clients:
            slices = {True: [], False: []}
            for _ in range(args.slices):  # alternate on/off in short slices: both see the same load
                for batching in (True, False):
                    slices[batching].append(asyncio.run(drive(servers[batching][1], texts, clients,
                                                              args.seconds / args.slices)))
            for batching in (True, False):
                r = combine(slices[batching])
                results[batching].append(r)
                print(f"batching {'on ' if batching else 'off'} clients {clients:>3}: {r['rps']:.1f} req/s "
                      f"p50 {r['p50']:.0f} ms p99 {r['p99']:.0f} ms errors {r['errors']}", file=sys.stderr)
    finally:
        for proc, _url in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    section = format_section(args, results, os.getloadavg()[0], load_before, cost)
    return publish(section, args.write)


def format_section(args, results, load_after, load_before, cost) -> str:
    cmd = "python benchmarks/service/serve_load.py " + " ".join(sys.argv[1:])
    lines = [f"## HTTP service under load: dynamic batching on vs off ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
             f"Server: `labelwise serve --model_path {args.model_path}` ({args.precision}), one process, one "
             f"inference thread; batching: max {args.max_batch_size} texts, max wait {args.max_wait_ms} ms. "
             f"Clients: httpx async on the same machine, one dev text per request, {args.seconds:.0f} s per setting "
             f"and server, in {args.slices} slices alternating between the two servers  ",
             f"Load average (1 min) before/after: {load_before:.1f} / {load_after:.1f} "
             "(the machine is shared: other jobs ran at the same time)", "",
             "| clients | batching | requests/s | p50 ms | p99 ms | errors | requests | texts per forward pass |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for on, off in zip(results[True], results[False]):
        for r, label in ((on, "on"), (off, "off")):
            lines.append(f"| {r['clients']} | {label} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                         f"{r['errors']} | {r['requests']} | {r['per_pass']:.1f} |")
    ratios = ", ".join(f"{on['clients']} clients {on['rps'] / max(off['rps'], 1e-9):.2f}x"
                       for on, off in zip(results[True], results[False]))
    top_on, top_off = results[True][-1], results[False][-1]
    met = top_on["rps"] >= 5 * top_off["rps"]
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    lines += ["", f"Throughput with batching / without: {ratios}. Target ≥ 5x at {top_on['clients']} clients: "
              f"{verdict(met)}. Errors in all: {errors}.", "",
              "Model time per text without HTTP (first 64 dev texts, length-sorted batches, best of 2): "
              + ", ".join(f"batch {k}: {v:.1f} ms" for k, v in cost.items())
              + ". Batching can only raise throughput by as much as larger batches lower this per-text cost."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
