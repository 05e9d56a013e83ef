"""The README and the guides stay true: their commands parse, their links and anchors resolve, the Python names
they mention exist, and the README stays a one-screen front door that names every CLI verb.

Links are checked as GitHub renders them: relative paths from the file that holds the link, `#anchor` against
the target's headings with GitHub's slug rules (lower case, punctuation dropped, spaces to hyphens, repeats
numbered -1, -2, ...). Nothing here lists the guides or their sections, so a guide or a section added later is
checked the same way without editing this file.
"""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from labelwise.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
README_MAX_BYTES = 12_000
FENCE = re.compile(r"^\s*(```|~~~)")


# ---- reading markdown ------------------------------------------------------------------------------------------
def split_fences(text: str) -> tuple[str, list[str]]:
    """(the text outside fenced code blocks, the blocks' contents)."""
    prose, blocks, block, fence = [], [], [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence, block = match.group(1), []
        elif fence is not None and line.strip().startswith(fence):
            blocks.append("\n".join(block))
            fence = None
        elif fence is not None:
            block.append(line)
        else:
            prose.append(line)
    return "\n".join(prose), blocks


def prose_of(text: str) -> str:
    """Markdown outside code: fenced blocks and inline code spans removed."""
    return re.sub(r"(`+).+?\1", "", split_fences(text)[0])


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a markdown text, repeated headings numbered."""
    found: set[str] = set()
    for line in split_fences(text)[0].splitlines():
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", line)
        if not match:
            continue
        base = candidate = slug(match.group(1))
        n = 0
        while candidate in found:
            n += 1
            candidate = f"{base}-{n}"
        found.add(candidate)
    return found


def links(path: Path) -> list[str]:
    """Every link target of a markdown file: inline links, images and reference definitions; code excluded."""
    prose = prose_of(path.read_text(encoding="utf-8"))
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    defined = re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", prose, flags=re.MULTILINE)
    return inline + defined


def link_problem(source: Path, target: str) -> str | None:
    """Why a link from ``source`` does not resolve, or None when it does (web links are not fetched)."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
        return None
    path_part, _, anchor = target.partition("#")
    dest = (source.parent / unquote(path_part)).resolve() if path_part else source
    if not dest.is_relative_to(REPO):
        return f"{target}: points outside the repository"
    if not dest.exists():
        return f"{target}: no such file"
    if anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest.read_text(encoding="utf-8")):
        return f"{target}: {dest.relative_to(REPO)} has no heading with the anchor #{anchor}"
    return None


LINKS = [(path, target) for path in DOCS for target in links(path)]


# ---- commands --------------------------------------------------------------------------------------------------
def documented_commands(paths=DOCS) -> list[tuple[str, str]]:
    """(file, command) for each `labelwise` line in a fenced code block (continuation lines joined)."""
    found = []
    for path in paths:
        for block in split_fences(path.read_text(encoding="utf-8"))[1]:
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("labelwise "):
                    found.append((path.name, line))
    return found


def verb_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command a user can run: ('train',), ('data', 'sparse'), ('interpret', 'words'), ..."""
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.extend(verb_paths(sub, prefix + (name,)) or [prefix + (name,)])
    return paths


def command_words(command: str) -> list[str]:
    """The subcommand words of a `labelwise ...` line (global options such as -q skipped)."""
    return [word for word in shlex.split(command)[1:] if not word.startswith("-")]


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 20 and len(DOCS) >= 5


@pytest.mark.parametrize("source,command", COMMANDS, ids=[f"{s}:{c[:60]}" for s, c in COMMANDS])
def test_documented_command_parses(source, command):
    command = re.sub(r"\[[^\]]*\]", "", command)  # optional parts written as [--flag value]
    argv = shlex.split(command.replace("$B", "/tmp/b"))[1:]
    if ">" in argv:  # a shell redirection: not the command's
        argv = argv[:argv.index(">")]
    parser = build_parser()
    if "--config" in argv:  # a run file the docs only name: one holding the command's required flags
        import tempfile

        from labelwise.cli.config_file import _command_parser, apply_config

        required = {a.dest: "x" for a in _command_parser(parser, argv)._actions if a.required and a.option_strings}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            handle.write("".join(f"{k}: {v}\n" for k, v in required.items()))
        argv[argv.index("--config") + 1] = handle.name
        apply_config(parser, argv)
    try:
        parser.parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{source}: `{command}` does not parse (exit {exit_.code})")


# ---- the README as a front door --------------------------------------------------------------------------------
def test_readme_fits_the_budget():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move narrative to docs/ (limit {README_MAX_BYTES})"


def test_readme_shows_a_command_for_every_verb():
    shown = [command_words(command) for _, command in documented_commands([README])]
    verbs = verb_paths(build_parser())
    assert len(verbs) >= 15  # the parser walk itself works: train ... interpret examples
    missing = [" ".join(verb) for verb in verbs if not any(words[:len(verb)] == list(verb) for words in shown)]
    assert not missing, f"README.md shows no command for: labelwise {', labelwise '.join(missing)}"


# ---- links -----------------------------------------------------------------------------------------------------
def test_the_docs_have_links_to_check():
    assert len(LINKS) >= 30
    assert any("#" in target for _, target in LINKS)


@pytest.mark.parametrize("source,target", LINKS, ids=[f"{p.name}:{t[:70]}" for p, t in LINKS])
def test_link_resolves(source, target):
    problem = link_problem(source, target)
    assert problem is None, f"{source.relative_to(REPO)}: {problem}"


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_reference_links_are_defined(path):
    prose = prose_of(path.read_text(encoding="utf-8"))
    defined = {label.lower() for label in re.findall(r"^ {0,3}\[([^\]]+)\]:", prose, flags=re.MULTILINE)}
    used = {label.lower() for label in re.findall(r"\]\[([^\]]+)\]", prose)}
    assert not used - defined, f"{path.name}: reference links without a definition: {sorted(used - defined)}"


def test_slug_follows_github():
    text = """# Title
## 2. Models: `--model_name`
## Sparse data + augmentation, 500 (divorce)
## Sparse data + augmentation, 500 (divorce)
## labelwise vs PaddleNLP's engine, ERNIE 3.0
### Importing annotations: `labelwise doccano`
## 少样本 分类
```
# not a heading
```
"""
    assert anchors(text) == {"title", "2-models---model_name", "sparse-data--augmentation-500-divorce",
                             "sparse-data--augmentation-500-divorce-1", "labelwise-vs-paddlenlps-engine-ernie-30",
                             "importing-annotations-labelwise-doccano", "少样本-分类"}


def test_link_checker_catches_broken_links(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "guide.md").write_text("# Guide\n\n## 1. Setup\n", encoding="utf-8")
    source = tmp_path / "README.md"
    source.write_text("[a](guide.md#1-setup) [b](guide.md#2-usage) [c](missing.md) [d](#nowhere) "
                      "`[e](in-code.md)`\n\n[f]: guide.md\n", encoding="utf-8")
    assert links(source) == ["guide.md#1-setup", "guide.md#2-usage", "missing.md", "#nowhere", "guide.md"]
    assert [link_problem(source, t) is None for t in links(source)] == [True, False, False, False, True]


# ---- Python names --------------------------------------------------------------------------------------------
FILE_SUFFIXES = {"json", "md", "txt", "onnx", "html", "safetensors", "py"}  # labelwise.json is a file, not a module


def python_names() -> list[tuple[str, str]]:
    """(file, dotted name) for every `labelwise.x.y` and `from labelwise.x import y` the docs mention."""
    found = set()
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for module, names in re.findall(r"\bfrom (labelwise(?:\.\w+)*) import ([\w, ]+)", text):
            found.update((path.name, f"{module}.{name.strip()}") for name in names.split(",") if name.strip())
        for dotted in re.findall(r"(?<![\w./-])labelwise(?:\.[A-Za-z_]\w*)+", text):
            if dotted.rsplit(".", 1)[1] not in FILE_SUFFIXES:
                found.add((path.name, dotted))
    return sorted(found)


NAMES = python_names()


def resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and look the rest up as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and not module.startswith(err.name) and not err.name.startswith("labelwise"):
                pytest.skip(f"{module} needs {err.name}, not installed here")
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_docs_name_python_objects():
    assert len(NAMES) >= 10
    assert ("README.md", "labelwise.Classifier.load") in NAMES


@pytest.mark.parametrize("source,dotted", NAMES, ids=[f"{s}:{d}" for s, d in NAMES])
def test_python_name_exists(source, dotted):
    try:
        resolve(dotted)
    except (ImportError, AttributeError) as err:
        pytest.fail(f"{source} names {dotted}, which does not exist ({err})")
