"""benchmarks/RESULTS.md, the current page: one table per concern, each row the latest figure of one benchmark.

    python benchmarks/results_page.py        # rebuild history/records.json and RESULTS.md from history/log.md

The scripts live in one folder per concern: accuracy/, label_efficiency/, speed/, service/, compression/,
retrieval/ (the page's tables follow the same concerns); _common.py is their shared harness.

Every benchmark section ever written stays, dated, in ``history/log.md`` (``--write`` appends there, then this
page is rebuilt). A *record* is one section read back: its title, date, command, machine and headline (its
"Targets" line, else its first bold figures). The page keeps the latest record of each title (the same title
written again later replaces the row) and links each row to its full section in the history.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOG = HERE / "history" / "log.md"
RECORDS = HERE / "history" / "records.json"
PAGE = HERE / "RESULTS.md"

# concern → words of a section title that put it there (first match wins, in this order)
CONCERNS = [("Service", ("http service", "soak", "ray batch")),
            ("Speed", ("inference speed", "int8", "bf16", "training speed", "vs paddlenlp", "amx", "engine")),
            ("Compression", ("pruning", "model effects", "export")),
            ("Retrieval", ("retrieval",)),
            ("Label efficiency", ("few-shot", "zero-shot", "setfit", "active learning", "annotation splits",
                                  "adaptation", "stopping signal")),
            ("Accuracy", ("",))]  # everything else: accuracy, small data, long documents, trees, data tools


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _base(title: str) -> str:
    """A title without its trailing "(date ...)": what a later run of the same benchmark writes again."""
    return re.sub(r"\s*\((?:[^()]*\d{4}-\d{2}-\d{2}[^()]*)\)\s*$", "", title).strip()


def _headline(body: list[str]) -> str:
    for line in body:
        if line.startswith("Target"):
            return line
    for line in body:
        if "**" in line and not line.startswith("|"):
            return line
    bold = [cell for line in body if line.startswith("|") for cell in re.findall(r"\*\*([^*]+)\*\*", line)]
    return ("bold figures: " + ", ".join(bold[:4])) if bold else ""


def _field(body: list[str], *names: str) -> str:
    for line in body:
        for name in names:
            if line.startswith(name):
                return line[len(name):].strip().rstrip("\\ ").strip()
    return ""


def records(log: str) -> list[dict]:
    """One record per ``## `` section of the history, in the order written."""
    out, seen = [], {}
    sections = re.split(r"^## ", log, flags=re.M)[1:]
    for section in sections:
        lines = section.splitlines()
        title, body = lines[0].strip(), [line.strip() for line in lines[1:]]
        anchor = base = slug(title)
        seen[base] = seen.get(base, -1) + 1
        if seen[base]:
            anchor = f"{base}-{seen[base]}"
        date = re.search(r"\d{4}-\d{2}-\d{2}", title) or re.search(r"\d{4}-\d{2}-\d{2}", section)
        lowered = title.lower()
        concern = next(name for name, words in CONCERNS if any(w in lowered for w in words))
        out.append({"concern": concern, "benchmark": _base(title), "title": title, "date": date.group(0) if date
                    else "", "command": _field(body, "Command:", "Commands:"), "machine": _field(body, "Machine:",
                                                                                               "Where:"),
                    "headline": _headline(body), "anchor": anchor})
    return out


def current_paths(command: str) -> str:
    """A recorded command with each ``benchmarks/NAME.py`` that has moved since pointing where the script is now
    (the scripts were grouped into one folder per concern; the history keeps the commands as they were run)."""
    def where(match: re.Match) -> str:
        path = HERE.parent / match.group(0)
        if path.exists():
            return match.group(0)
        moved = sorted(HERE.glob(f"*/{path.name}"))
        return moved[0].relative_to(HERE.parent).as_posix() if moved else match.group(0)

    return re.sub(r"benchmarks/[\w/]+\.py", where, command)


def _cell(text: str, limit: int = 240) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def page(recs: list[dict]) -> str:
    latest: dict[str, dict] = {}
    for r in recs:  # later sections replace earlier ones of the same benchmark
        latest.pop(r["benchmark"], None)
        latest[r["benchmark"]] = r
    lines = ["# Benchmark results: the current figures", "",
             "Generated by `python benchmarks/results_page.py` from the records of "
             "[history/log.md](history/log.md), where every section ever written stays, dated, with its full "
             "tables (`--write` appends there and rebuilds this page). One table per concern; each row is the "
             "latest run of one benchmark; its link opens the full section.", ""]
    for concern, _ in CONCERNS:
        rows = sorted((r for r in latest.values() if r["concern"] == concern), key=lambda r: r["date"], reverse=True)
        if not rows:
            continue
        lines += [f"## {concern}", "", "| benchmark | date | headline | command | machine |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| [{_cell(r['benchmark'], 120)}](history/log.md#{r['anchor']}) | {r['date']} | "
                         f"{_cell(r['headline'])} | {_cell(current_paths(r['command']), 160)} | {_cell(r['machine'], 120)} |")
        lines.append("")
    return "\n".join(lines)


def build() -> int:
    recs = records(LOG.read_text(encoding="utf-8"))
    RECORDS.write_text(json.dumps(recs, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    PAGE.write_text(page(recs), encoding="utf-8")
    return len(recs)


if __name__ == "__main__":
    print(f"{build()} records; {PAGE.relative_to(HERE.parent)} rebuilt", file=sys.stderr)
