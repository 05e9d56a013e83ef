"""The HTTP service against the model's own throughput, loaded by wrk (a C load generator, not Python).

    apt-get install wrk            # Debian's package
    python benchmarks/service/serve_wrk.py --dataset_dir data/divorce [--model_path export] [--precision int8] [--write]

In one run: `labelwise serve` in a subprocess, loaded by `wrk -t1` at each --connections count, with one text
per request and with --batch_texts texts per request, for --seconds each: served texts/s, p50/p99 latency and
every error wrk counts (non-2xx, connect, read, write, timeout); and, right before and right after every such
row, the model's offline throughput on the same dev texts at batch 32, same precision and threads, without
HTTP (the server idle). Each row's share is its texts/s over the mean of the two offline measurements around
it: on a shared virtual machine the offline rate itself drifts by tens of percent within minutes. The target
(performance issue): at 32 connections, served texts/s ≥ 80% of offline, p99 ≤ 4 × p50.

Without --model_path the script builds an m3e-small model with divorce's labels and a random head and exports
it (fp32 + int8, cached in runs/serve_wrk/): speed does not depend on what the weights learned.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish, run_started, start_server, verdict  # noqa: E402

LUA = r"""
local bodies, n = {}, 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
request = function()
  n = n + 1
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, bodies[(n % #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "status": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, e.status,
    e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--model_path", default=None, help="an export folder (default: build one, see above)")
    p.add_argument("--precision", default="int8", choices=["fp32", "int8"])
    p.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--batch_texts", type=int, default=16, help="texts per request in the second series")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--num_threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--serve_args", default="", help="extra `labelwise serve` flags, e.g. '--no_dynamic_batching'")
    p.add_argument("--write", action="store_true")
    return p.parse_args(argv)


def default_export(dataset_dir: str) -> Path:
    from labelwise.compress.export import export_onnx
    from labelwise.data.dataset import read_labels
    from labelwise.model.checkpoint import CheckpointMeta, save_checkpoint
    from labelwise.model.encoders import build_model

    folder = Path("runs/serve_wrk")
    export = folder / "export"
    if not (export / "model.int8.onnx").exists():
        labels = read_labels(Path(dataset_dir) / "label.txt")
        model, tokenizer, pooling = build_model("m3e-small", labels)
        save_checkpoint(folder / "checkpoint", model, tokenizer,
                        CheckpointMeta(labels=labels, max_seq_length=128, base_model="m3e-small", pooling=pooling))
        export_onnx(folder / "checkpoint", export, quantize="int8")
    return export


def offline_meter(export: Path, texts: list[str], precision: str, threads: int | None):
    """A function that measures the model's texts/s alone at batch 32 (one pass over ``texts``)."""
    from labelwise.predict.classifier import Classifier

    options = {"precision": precision} if precision != "fp32" else {}
    clf = Classifier.load(export, num_threads=threads, **options)
    clf.predict_proba(texts[:32])

    def measure() -> float:
        start = time.perf_counter()
        clf.predict_proba(texts, batch_size=32)
        return len(texts) / (time.perf_counter() - start)
    return measure


def serve_flags(export: Path, args) -> list[str]:
    from labelwise.serve.config import ServeConfig

    flags = ["--model_path", str(export), "--precision", args.precision, "--log_level", "warning",
             *args.serve_args.split()]
    if "max_queue" in ServeConfig.__dataclass_fields__:  # (older labelwise, for before/after runs, has none)
        flags += ["--max_queue", "4096"]  # measure throughput, not load shedding
    if args.num_threads:
        flags += ["--num_threads", str(args.num_threads)]
    return flags


def wait_idle(url: str) -> None:
    """Until the server has answered what wrk left queued: its forward-pass count stops moving."""
    import httpx

    last = None
    for _ in range(600):
        passes = httpx.get(url + "/health", timeout=30).json()["stats"]["forward_passes"]
        if passes == last:
            return
        last = passes
        time.sleep(0.5)


def run_wrk(url: str, script: Path, bodies: Path, connections: int, seconds: int, *script_args: str) -> dict:
    """One ``wrk -t1`` run; the script gets ``bodies`` and ``script_args`` and prints a ``RESULT {json}`` line."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script),
                          url, "--", str(bodies), *script_args], capture_output=True, text=True, check=True).stdout
    line = next(row for row in out.splitlines() if row.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def texts_and_model(args, limit: int) -> tuple[list[str], Path]:
    """For a wrk run (wrk must be installed): the first ``limit`` dev texts of --dataset_dir and the model folder
    (--model_path, else :func:`default_export`)."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    from labelwise.data.dataset import read_examples, read_labels

    labels = read_labels(Path(args.dataset_dir) / "label.txt")
    texts = [e.text for e in read_examples(Path(args.dataset_dir) / "dev.txt", labels)][:limit]
    return texts, Path(args.model_path) if args.model_path else default_export(args.dataset_dir)


def main(argv=None) -> str:
    args = parse_args(argv)
    started, load_before = run_started()
    texts, export = texts_and_model(args, 512)
    offline = offline_meter(export, texts, args.precision, args.num_threads)
    rows = []
    proc, url = start_server(serve_flags(export, args))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "post.lua"
            script.write_text(LUA)
            for per_request in (1, args.batch_texts):
                bodies = Path(tmp) / f"bodies{per_request}.jsonl"
                bodies.write_text("".join(json.dumps({"texts": texts[i:i + per_request]}, ensure_ascii=False) + "\n"
                                          for i in range(0, len(texts) - per_request + 1, per_request)),
                                  encoding="utf-8")
                run_wrk(url, script, bodies, 4, 2)  # warm-up
                wait_idle(url)
                for connections in args.connections:
                    before = offline()
                    r = run_wrk(url, script, bodies, connections, args.seconds)
                    wait_idle(url)  # requests still queued when wrk stopped would slow the offline pass
                    seconds = r["duration_us"] / 1e6
                    r.update(per_request=per_request, connections=connections, rps=r["requests"] / seconds,
                             texts_s=r["requests"] * per_request / seconds, offline=(before + offline()) / 2,
                             errors=r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"])
                    rows.append(r)
                    print(f"{per_request} text(s)/request, {connections} connections: {r['rps']:.1f} req/s, "
                          f"{r['texts_s']:.1f} texts/s ({r['texts_s'] / r['offline']:.0%} of {r['offline']:.0f} "
                          f"offline), p50 {r['p50_us'] / 1000:.1f} ms, p99 {r['p99_us'] / 1000:.1f} ms, errors "
                          f"{r['errors']}", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    section = format_section(args, export, rows, started, load_before, os.getloadavg()[0])
    return publish(section, args.write)


def format_section(args, export, rows, started, load_before, load_after) -> str:
    cmd = "python benchmarks/service/serve_wrk.py " + " ".join(sys.argv[1:])
    lines = [f"## HTTP service vs the model's own throughput, wrk ({started})", "", f"Command: `{cmd}`  ",
             f"Machine: {machine()}  ",
             f"Model: {export} ({args.precision}); server: `labelwise serve` (one process, dynamic batching, "
             f"max 32 texts per pass{', ' + args.serve_args if args.serve_args else ''}); load: `wrk -t1`, "
             f"{args.seconds} s per row, on the same 2 cores; load average before/after {load_before:.1f} / "
             f"{load_after:.1f}", "",
             "Offline: the same texts and precision at batch 32 without HTTP, measured right before and after each "
             "row (mean of the two).", "",
             "| texts/request | connections | requests/s | texts/s | offline texts/s | % of offline | p50 ms | p99 ms "
             "| p99/p50 | errors |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['per_request']} | {r['connections']} | {r['rps']:.1f} | {r['texts_s']:.1f} | "
                     f"{r['offline']:.1f} | {100 * r['texts_s'] / r['offline']:.0f}% | {r['p50_us'] / 1000:.1f} | "
                     f"{r['p99_us'] / 1000:.1f} | {r['p99_us'] / max(r['p50_us'], 1):.1f} | {r['errors']} |")
    at32 = [r for r in rows if r["connections"] == 32 and r["per_request"] == 1]
    if at32:
        r = at32[0]
        share, spread = r["texts_s"] / r["offline"], r["p99_us"] / max(r["p50_us"], 1)
        lines += ["", f"Target at 32 connections, one text per request: texts/s ≥ 80% of offline ({100 * share:.0f}%: "
                      f"{verdict(share >= 0.8)}), p99 ≤ 4 × p50 ({spread:.1f}×: "
                      f"{verdict(spread <= 4)})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
