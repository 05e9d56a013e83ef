"""The README and the guides: every `labelwise ...` command they show parses with the real CLI."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from labelwise.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for each `labelwise` line in a fenced code block (continuation lines joined)."""
    found = []
    for path in DOCS:
        for block in re.findall(r"```[a-z]*\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("labelwise "):
                    found.append((path.name, line))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 20 and len(DOCS) >= 5
    assert (REPO / "README.md").stat().st_size < 12_500


@pytest.mark.parametrize("source,command", COMMANDS, ids=[f"{s}:{c[:60]}" for s, c in COMMANDS])
def test_documented_command_parses(source, command):
    command = re.sub(r"\[[^\]]*\]", "", command)  # optional parts written as [--flag value]
    argv = shlex.split(command.replace("$B", "/tmp/b"))[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{source}: `{command}` does not parse (exit {exit_.code})")
