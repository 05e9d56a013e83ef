"""Build the two label-tree datasets from the flat copies bundled in data/ (same texts, same splits).

    python benchmarks/data/make_tree_datasets.py            # writes data/goemotions_ekman and data/divorce_tree
    python benchmarks/data/make_tree_datasets.py --check    # exit 1 if a committed file differs from a fresh build

* ``goemotions_ekman``: every GoEmotions emotion becomes ``group##emotion`` under the Ekman grouping that
  the GoEmotions authors publish (Demszky et al., 2020, "GoEmotions: A Dataset of Fine-Grained Emotions",
  ACL; the google-research repository's ``goemotions/data/ekman_mapping.json``). Written out here as facts:
  anger: anger, annoyance, disapproval; disgust: disgust; fear: fear, nervousness; joy: joy, amusement,
  approval, excitement, gratitude, love, optimism, relief, pride, admiration, desire, caring; sadness:
  sadness, disappointment, embarrassment, grief, remorse; surprise: surprise, realization, confusion,
  curiosity. ``neutral`` is in no Ekman group: it stays a root with no children (a one-level path).
  Six group names are also emotion names, so ``anger`` (the group) and ``anger##anger`` (the emotion) are
  two labels; ``disgust`` is the only child of its group, so the two always go together.
* ``divorce_tree``: CAIL2019 divorce's 20 elements under 5 topic parents. The grouping is ours (by the
  labels' legal meaning), not CAIL's nor PaddleNLP's; see ``DIVORCE_GROUPS``.

Each data line lists the parents and the leaves (PaddleNLP's hierarchical format, e.g.
``text\\tjoy,joy##amusement,neutral``), in label.txt order; label.txt lists every parent followed by its
children. Nothing else changes: same lines in the same order, so the splits are those of the source.

Why the folders are committed rather than built on demand: they are the sources with a prefix on each
label (GoEmotions 4.4 MB → 4.9 MB, divorce 3.1 MB → 3.6 MB), and git stores them next to the sources
compactly (same texts, same file names, so they pack as deltas: both folders measured +0.43 MB in a packed
repository, 3.3 MB as loose objects before `git gc`). Run this script after any change to data/goemotions or
data/divorce; ``--check`` says whether that is needed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEP = "##"

EKMAN_GROUPS = {  # Demszky et al. 2020, ekman_mapping.json (group → GoEmotions emotions)
    "anger": ["anger", "annoyance", "disapproval"],
    "disgust": ["disgust"],
    "fear": ["fear", "nervousness"],
    "joy": ["joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief", "pride",
            "admiration", "desire", "caring"],
    "sadness": ["sadness", "disappointment", "embarrassment", "grief", "remorse"],
    "surprise": ["surprise", "realization", "confusion", "curiosity"],
}
EKMAN_ROOTS = ["neutral"]  # in no group: kept as a one-level label

DIVORCE_GROUPS = {  # our grouping of CAIL2019 divorce's elements by topic (not from CAIL or PaddleNLP)
    "子女": ["婚后有子女", "限制行为能力子女抚养", "支付抚养费", "按月给付抚养费", "存在非婚生子", "子女随非抚养权人生活"],
    "财产": ["有夫妻共同财产", "不动产分割", "婚前个人财产", "婚后个人财产"],
    "债务与补偿": ["有夫妻共同债务", "适当帮助", "损害赔偿"],  # money owed between or by the spouses
    "感情与分居": ["婚后分居", "感情不和分居满二年", "不履行家庭义务"],
    "离婚诉讼": ["准予离婚", "法定离婚", "二次起诉离婚", "不履行离婚协议"],
}

DATASETS = {  # name → (source folder, groups, roots kept as they are)
    "goemotions_ekman": ("goemotions", EKMAN_GROUPS, EKMAN_ROOTS),
    "divorce_tree": ("divorce", DIVORCE_GROUPS, []),
}
SPLITS = ("train", "dev", "test")


def tree_labels(flat_labels: list[str], groups: dict[str, list[str]], roots: list[str]) -> tuple[list[str], dict]:
    """(the tree's label.txt lines, flat label → the labels a line carrying it gets).

    Each group's children come in the source label.txt's order. Every flat label must land in exactly one
    group or in ``roots``: a label left out or placed twice is an error, so a changed source cannot slip by.
    """
    placed: dict[str, str | None] = {}
    for parent, children in groups.items():
        for child in children:
            if child in placed:
                raise SystemExit(f"{child!r} is in two groups")
            placed[child] = parent
    for root in roots:
        if root in placed:
            raise SystemExit(f"{root!r} is both a root and in a group")
        placed[root] = None
    if set(placed) != set(flat_labels):
        missing, extra = set(flat_labels) - set(placed), set(placed) - set(flat_labels)
        raise SystemExit(f"the grouping does not match the source labels: not placed {sorted(missing)}, "
                         f"unknown {sorted(extra)}")
    order = {label: i for i, label in enumerate(flat_labels)}
    lines: list[str] = []
    for parent, children in groups.items():
        lines.append(parent)
        lines += [f"{parent}{SEP}{child}" for child in sorted(children, key=order.__getitem__)]
    lines += roots
    to_tree = {label: ((placed[label], f"{placed[label]}{SEP}{label}") if placed[label] else (label,))
               for label in flat_labels}
    return lines, to_tree


def convert_line(line: str, to_tree: dict, position: dict) -> str:
    text, _, field = line.partition("\t")
    labels = {tree for flat in field.split(",") if flat for tree in to_tree[flat]}
    return f"{text}\t{','.join(sorted(labels, key=position.__getitem__))}"


def build(source: Path, groups: dict[str, list[str]], roots: list[str]) -> dict[str, str]:
    """File name → content of the tree dataset built from the flat folder ``source``."""
    flat = (source / "label.txt").read_text(encoding="utf-8").splitlines()
    labels, to_tree = tree_labels(flat, groups, roots)
    position = {label: i for i, label in enumerate(labels)}
    files = {"label.txt": "".join(f"{label}\n" for label in labels)}
    stats: dict = {"source": source.name, "labels": len(labels), "parents": len(groups),
                   "leaves": len(labels) - len(groups), "splits": {}}
    for name in SPLITS:
        path = source / f"{name}.txt"
        if not path.exists():
            continue
        lines = [convert_line(line, to_tree, position) for line in path.read_text(encoding="utf-8").splitlines()]
        files[f"{name}.txt"] = "".join(f"{line}\n" for line in lines)
        per_label = dict.fromkeys(labels, 0)
        for line in lines:
            for label in line.partition("\t")[2].split(","):
                if label:
                    per_label[label] += 1
        stats["splits"][name] = {"examples": len(lines), "per_label": per_label}
    if (source / "data.txt").exists():
        files["data.txt"] = (source / "data.txt").read_text(encoding="utf-8")
    files["stats.json"] = json.dumps(stats, indent=1, ensure_ascii=False) + "\n"
    files["SOURCE.md"] = source_md(source.name, groups, roots, stats)
    return files


def source_md(source: str, groups: dict[str, list[str]], roots: list[str], stats: dict) -> str:
    ekman = source == "goemotions"
    origin = ("the GoEmotions authors' Ekman grouping (Demszky et al., 2020, ACL; google-research "
              "`goemotions/data/ekman_mapping.json`); `neutral` is in no group and stays a root"
              if ekman else "a grouping by topic that is ours (labelwise's), not CAIL2019's nor PaddleNLP's")
    rows = [f"| {p} | {', '.join(c)} |" for p, c in groups.items()] + [f"| {r} | (a root, no children) |" for r in roots]
    names = list(stats["splits"])
    counts = [f"| {n} | {stats['splits'][n]['examples']} |" for n in names]
    return "\n".join([
        f"# {source} as a two-level label tree", "",
        f"Built by `python benchmarks/data/make_tree_datasets.py` from `data/{source}` (see its SOURCE.md for the",
        "texts' origin and license): the same lines in the same order and splits, each grouped label replaced by",
        "`parent##label` plus `parent`.", "", f"Tree: {origin}.", "",
        f"{stats['labels']} labels: {stats['parents']} parents, {stats['leaves']} leaves "
        "(a root with no children counts as a leaf).", "",
        "| parent | children |", "|---|---|", *rows, "",
        "| split | examples |", "|---|---:|", *counts, "",
        "Examples per label and split: `stats.json`. Do not edit these files by hand; rebuild them.", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data_dir", default=str(REPO / "data"), help="holds the flat sources and receives the trees")
    ap.add_argument("--only", choices=sorted(DATASETS), help="build one of the two")
    ap.add_argument("--check", action="store_true", help="compare with the files there instead of writing")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    from labelwise.files import atomic_write_text

    data_dir, stale = Path(args.data_dir), []
    for name, (source, groups, roots) in DATASETS.items():
        if args.only and name != args.only:
            continue
        out = data_dir / name
        for filename, content in build(data_dir / source, groups, roots).items():
            path = out / filename
            same = path.exists() and path.read_text(encoding="utf-8") == content
            if args.check:
                if not same:
                    stale.append(str(path))
            elif not same:
                out.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, content)
                print(f"wrote {path}")
    if stale:
        print("out of date (rebuild with benchmarks/data/make_tree_datasets.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
