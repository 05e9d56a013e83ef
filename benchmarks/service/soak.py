"""Soak test: the HTTP service under wrk for many minutes with a mix of good and bad requests.

    apt-get install wrk            # Debian's package
    python benchmarks/service/soak.py --dataset_dir data/divorce [--model_path export] [--minutes 10] [--write]

`labelwise serve` runs in a subprocess with an API key (so the key check is on the hot path), loaded by
`wrk -t1` for --minutes, as back-to-back runs of one minute each. Every request is drawn in turn from a fixed
mix: one to four dev texts on /predict and on PaddleNLP's route (with the key), and --bad_share of bad ones:
malformed JSON, a body that is not UTF-8, an empty list, too many texts, an empty text, an unknown route, a
missing key and a wrong key (all must be answered 4xx). Per minute: requests, answers by status class, socket
errors, p50/p99 latency and the server's resident memory (RSS, psutil); /metrics is scraped after each minute.
Targets (service issue): no 5xx at all, RSS at the end within 5% of RSS after the first minute (the first
minute fills caches and allocator pools), p99 of every minute within 2x of the lowest minute's.

Without --model_path the script serves the m3e-small export that serve_wrk.py builds (random head: speed and
memory do not depend on what the weights learned). --minutes 0.2 is a smoke run of the script itself.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish, run_started, start_server, verdict  # noqa: E402
from serve_wrk import run_wrk, serve_flags, texts_and_model  # noqa: E402

# Each line of the request file: METHOD, path, which key to send (good | none | wrong), body; tab-separated.
LUA = r"""
local requests, n, threads = {}, 0, {}
setup = function(thread) table.insert(threads, thread) end
init = function(args)
  for line in io.lines(args[1]) do
    local method, path, key, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {["Content-Type"] = "application/json"}
    if key == "good" then headers["Authorization"] = "Bearer " .. args[2] end
    if key == "wrong" then headers["X-API-Key"] = "not-" .. args[2] end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
  statuses = {}
end
request = function()
  n = n + 1
  return requests[(n % #requests) + 1]
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local e, parts = summary.errors, {}
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do counts[status] = (counts[status] or 0) + count end
  end
  for status, count in pairs(counts) do parts[#parts + 1] = string.format('"%d": %d', status, count) end
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p99_us": %d, "statuses": {%s}}\n', summary.requests, summary.duration,
    e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99), table.concat(parts, ", ")))
end
"""

BAD = [  # (method, path, key, body): each must get a 4xx
    ("POST", "/predict", "good", b'{"texts": ["a", }'),
    ("POST", "/predict", "good", b'{"texts": ["\xff"]}'),
    ("POST", "/predict", "good", b'{"texts": []}'),
    ("POST", "/predict", "good", json.dumps({"texts": ["x"] * 65}).encode()),
    ("POST", "/predict", "good", b'{"texts": ["fine", "  "]}'),
    ("GET", "/no/such/route", "good", b""),
    ("POST", "/predict", "none", b'{"texts": ["no key"]}'),
    ("POST", "/predict", "wrong", b'{"texts": ["wrong key"]}'),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default="data/divorce", help="good requests carry its dev texts")
    p.add_argument("--model_path", default=None, help="an export or checkpoint folder (default: see above)")
    p.add_argument("--precision", default="int8", choices=["fp32", "int8"], help="for an export")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--bad_share", type=float, default=0.2, help="share of bad requests in the mix")
    p.add_argument("--num_threads", type=int, default=None, help="inference threads (default: all cores)")
    p.add_argument("--serve_args", default="", help="extra `labelwise serve` flags")
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    return p.parse_args(argv)


def request_mix(texts: list[str], bad_share: float) -> list[tuple[str, str, str, bytes]]:
    """Good requests (1-4 texts, both routes) with the bad ones spread evenly among them."""
    good = []
    for i, start in enumerate(range(0, len(texts) - 4, 4)):
        chunk = texts[start:start + 1 + i % 4]
        if i % 5 == 4:
            body = {"data": {"text": chunk}}
            good.append(("POST", "/models/cls_multi_label", "good", json.dumps(body, ensure_ascii=False).encode()))
        else:
            body = {"texts": chunk, "top_k_min": i % 2}
            good.append(("POST", "/predict", "good", json.dumps(body, ensure_ascii=False).encode()))
    n_bad = round(len(good) * bad_share / (1 - bad_share)) if bad_share < 1 else len(good)
    mix, step = list(good), len(good) / max(n_bad, 1)
    for k in range(n_bad):
        mix.insert(int(k * step) + k, BAD[k % len(BAD)])
    return mix


def minute_lengths(minutes: float) -> list[int]:
    seconds = max(1, round(minutes * 60))
    return [60] * (seconds // 60) + ([seconds % 60] if seconds % 60 else [])


def rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2 ** 20


def scrape_ok(url: str, key: str) -> bool:
    import httpx

    response = httpx.get(url + "/metrics", headers={"X-API-Key": key}, timeout=30)
    return response.status_code == 200 and "labelwise_requests_total" in response.text


def main(argv=None) -> str:
    args = parse_args(argv)
    started, load_before = run_started()
    texts, model = texts_and_model(args, 600)
    if not (model / "model.onnx").exists():
        args.precision = "fp32"  # a checkpoint runs in PyTorch, fp32
    key = secrets.token_urlsafe(24)
    os.environ["LABELWISE_API_KEY"] = key  # the server inherits it: the key stays off its command line
    rows, scrapes = [], []
    proc, url = start_server(serve_flags(model, args))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script, mix = Path(tmp) / "soak.lua", Path(tmp) / "requests.tsv"
            script.write_text(LUA)
            mix.write_bytes(b"".join(f"{m}\t{path}\t{k}\t".encode() + body + b"\n"
                                     for m, path, k, body in request_mix(texts, args.bad_share)))
            run_wrk(url, script, mix, 4, 3, key)  # warm-up
            rss_start = rss_mib(proc.pid)
            for number, seconds in enumerate(minute_lengths(args.minutes), 1):
                r = run_wrk(url, script, mix, args.connections, seconds, key)
                classes = {f"{c}xx": sum(v for s, v in r["statuses"].items() if s[0] == str(c)) for c in (2, 4, 5)}
                r.update(minute=number, rss=rss_mib(proc.pid), seconds=r["duration_us"] / 1e6,
                         socket=r["connect"] + r["read"] + r["write"] + r["timeout"], **classes)
                scrapes.append(scrape_ok(url, key))
                rows.append(r)
                print(f"minute {number}: {r['requests']} requests, 2xx {r['2xx']}, 4xx {r['4xx']}, 5xx {r['5xx']}, "
                      f"socket errors {r['socket']}, p50 {r['p50_us'] / 1000:.1f} ms, p99 {r['p99_us'] / 1000:.1f} ms, "
                      f"RSS {r['rss']:.0f} MiB", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    section = format_section(args, model, rows, rss_start, scrapes, started, load_before, os.getloadavg()[0])
    return publish(section, args.write)


def format_section(args, model, rows, rss_start, scrapes, started, load_before, load_after) -> str:
    cmd = "python benchmarks/service/soak.py " + " ".join(sys.argv[1:])
    statuses: dict[str, int] = {}
    for r in rows:
        for status, count in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    total = sum(r["requests"] for r in rows)
    lines = [f"## Soak: the HTTP service for {args.minutes:g} minutes under wrk, good and bad requests ({started})", "",
             f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
             f"Model: {model} ({args.precision}); server: `labelwise serve` with an API key"
             f"{', ' + args.serve_args if args.serve_args else ''}; load: `wrk -t1 -c{args.connections}`, back-to-back "
             f"one-minute runs on the same cores; {args.bad_share:.0%} bad requests (malformed JSON, not UTF-8, "
             "empty list, too many texts, empty text, unknown route, missing key, wrong key); load average "
             f"before/after {load_before:.1f} / {load_after:.1f}", "",
             "| minute | requests | requests/s | 2xx | 4xx | 5xx | socket errors | p50 ms | p99 ms | server RSS MiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['minute']} | {r['requests']} | {r['requests'] / r['seconds']:.1f} | {r['2xx']} "
                     f"| {r['4xx']} | {r['5xx']} | {r['socket']} | {r['p50_us'] / 1000:.1f} "
                     f"| {r['p99_us'] / 1000:.1f} | {r['rss']:.0f} |")
    fives = sum(r["5xx"] for r in rows)
    growth = rows[-1]["rss"] / rows[0]["rss"] - 1 if rows else math.nan
    p99 = [r["p99_us"] for r in rows]
    spread = max(p99) / max(min(p99), 1) if p99 else math.nan
    by_code = ", ".join(f"{code}: {statuses[code]}" for code in sorted(statuses))
    lines += ["", f"{total} requests; answers by status: {by_code}; socket errors "
                  f"{sum(r['socket'] for r in rows)}. RSS after warm-up {rss_start:.0f} MiB, after minute 1 "
                  f"{rows[0]['rss']:.0f} MiB, at the end {rows[-1]['rss']:.0f} MiB. /metrics answered after "
                  f"{sum(scrapes)} of {len(scrapes)} minutes.", "",
              f"Targets: no 5xx ({fives}: {verdict(fives == 0)}); RSS growth from minute 1 to the "
              f"end ≤ 5% ({100 * growth:+.1f}%: {verdict(growth <= 0.05)}); p99 of every minute "
              f"within 2× of the lowest ({spread:.2f}×: {verdict(spread <= 2)})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
