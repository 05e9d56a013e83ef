"""Shared bits of the benchmark scripts: the flags most of them take, the machine description, writing a section
(history/log.md, then the current RESULTS.md), per-draw record files.

The scripts sit in one folder per concern (CONCERN_DIRS); importing this module puts every one of those folders on
``sys.path``, so a script imports another's helpers by its plain name (``from few_shot import draw``) wherever each
of them lives."""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
CONCERN_DIRS = ("accuracy", "label_efficiency", "speed", "service", "compression", "retrieval")
for _folder in CONCERN_DIRS:
    if str(HERE / _folder) not in sys.path:
        sys.path.append(str(HERE / _folder))


# the flags most benchmarks take: parser(__doc__, "dataset_dir", "model_name", "draws", draws=3) gives them
SHARED_FLAGS = {
    "dataset_dir": {"default": "data/divorce", "help": "the dataset folder"},
    "model_name": {"default": "m3e-small", "help": "the encoder"},
    "per_label": {"type": int, "default": 4, "help": "examples per label of a few-shot draw"},
    "draws": {"type": int, "default": 5, "help": "random draws (seeds --first_draw, +1, ...)"},
    "first_draw": {"type": int, "default": 0, "help": "the random seed of the first draw"},
    "test_size": {"type": int, "default": 2000, "help": "test texts drawn from the rest of train"},
    "seeds": {"type": int, "default": 3, "help": "runs, with seeds 0, 1, ..."},
    "out": {"default": None, "help": "also write the per-draw records here (JSON)"},
    "write": {"action": "store_true", "help": "append the section to benchmarks/history/log.md and rebuild "
                                              "benchmarks/RESULTS.md"},
}


def parser(doc: str, *shared: str, **defaults) -> argparse.ArgumentParser:
    """A benchmark's argument parser (its description: the first line of ``doc``) with the ``shared`` flags of
    SHARED_FLAGS; ``defaults`` changes a shared flag's default for this benchmark."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name in shared:
        options = dict(SHARED_FLAGS[name])
        if name in defaults:
            options["default"] = defaults.pop(name)
        p.add_argument(f"--{name}", **options)
    if defaults:
        raise TypeError(f"defaults for flags not asked for: {', '.join(defaults)}")
    return p


def section_head(title: str, started: str | None = None, load_before: float | None = None) -> list[str]:
    """The first lines of a section: its title with the start time (UTC), the command as it was run, the machine
    and, given the load average at the start, that and the one now."""
    import time

    started = started or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    script = Path(sys.argv[0]).resolve()
    where = script.relative_to(HERE.parent).as_posix() if script.is_relative_to(HERE) else script.name
    command = " ".join(["python", where, *sys.argv[1:]])
    lines = [f"## {title} ({started})", "", f"Command: `{command}`  ", f"Machine: {machine()}  "]
    if load_before is not None:
        lines.append(f"Load average before/after {load_before:.1f} / {os.getloadavg()[0]:.1f}.  ")
    return lines


def verdict(ok: bool) -> str:
    """How a section says whether a target was reached."""
    return "**met**" if ok else "**not met**"


def int8_instructions(flags: set[str]) -> str:
    """The widest int8 dot-product instructions the CPU has: what ONNX Runtime's int8 kernels can use."""
    for flag, name in (("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"), ("avx512bw", "AVX-512, no VNNI"),
                       ("avx2", "AVX2, no VNNI")):
        if flag in flags:
            return name
    return "no AVX2"


def machine() -> str:
    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model is None:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    cpu = model or platform.processor() or platform.machine()
    if flags:
        bf16 = "AVX-512 BF16" if "avx512_bf16" in flags else "no bf16 instructions"
        cpu += f", int8: {int8_instructions(flags)}, bf16: {bf16}{', AMX' if 'amx_tile' in flags else ''}"
    import torch

    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def run_started() -> tuple[str, float]:
    """When a benchmark starts (UTC, for its title) and the 1-minute load average then (for its section)."""
    import logging
    import time

    logging.basicConfig(level=logging.WARNING)
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]


def start_server(serve_flags: list[str], timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """`labelwise serve` with ``serve_flags`` in a subprocess on a free local port; (process, URL) once /health answers."""
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "labelwise", "-q", "serve", "--host", "127.0.0.1", "--port", str(port), *serve_flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"server did not start in {timeout:.0f} s")


def append_results(section: str) -> None:
    """Append a section to benchmarks/history/log.md, then rebuild benchmarks/RESULTS.md (the current page)."""
    import results_page

    with results_page.LOG.open("a", encoding="utf-8") as handle:
        handle.write("\n" + section.rstrip() + "\n")
    results_page.build()


def read_draws(path: str | os.PathLike | None) -> list[dict]:
    """The per-draw records already in the JSON file ``path`` (none when it is missing or not given); a record
    without a ``draw`` number is seed 0, 1, ... by its place in the file."""
    import json

    if not path or not Path(path).exists():
        return []
    return [{"draw": k, **d} for k, d in enumerate(json.loads(Path(path).read_text(encoding="utf-8")))]


def write_draws(path: str | os.PathLike, draws: list[dict]) -> None:
    """``draws`` sorted by draw number into the JSON file ``path``, atomically: a run cut short keeps what finished."""
    from labelwise.files import atomic_write_json

    atomic_write_json(path, sorted(draws, key=lambda d: d["draw"]))


def publish(section: str, write: bool) -> str:
    """Print a benchmark's Markdown section; with ``write``, also append it to RESULTS.md."""
    print(section)
    if write:
        append_results(section)
    return section


def run_jobs(job, jobs: list[tuple], workers: int, out: str, describe=None) -> list[dict]:
    """``job(*args)`` for every tuple in ``jobs`` in ``workers`` spawned processes (one GPU can take several).

    A failing job is reported and skipped, never losing the others; the results so far are rewritten to the JSON
    file ``out`` after each job, so a run cut short keeps what finished. ``describe(result)``: a progress line.
    """
    import json
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results, started = [], time.time()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(job, *args): args for args in jobs}
        for future in as_completed(futures):
            try:
                results.append(future.result())
            except Exception as err:  # one broken job must not lose the others
                print(f"job {futures[future][1:]} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                continue
            line = describe(results[-1]) if describe else json.dumps(results[-1])
            print(f"[{time.time() - started:.0f}s] {line}", file=sys.stderr, flush=True)
            Path(out).write_text(json.dumps(results, indent=1))
    print(f"{len(results)}/{len(jobs)} jobs in {time.time() - started:.0f} s; load {os.getloadavg()[0]:.1f}",
          file=sys.stderr)
    if not results:
        sys.exit("every job failed")
    return results
