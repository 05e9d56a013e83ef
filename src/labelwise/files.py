"""Safe writes: everything goes to a temporary file or folder first and is renamed into place.

The one save path of every command that writes a model or an index (``train``, ``zeroshot``, ``prune``,
``export``, ``index``): :func:`prepare_output_dir` refuses a folder labelwise may not write to, before any
work is done; :func:`atomic_dir` writes the new folder beside the old one and swaps it in, so a crash leaves
either the old or the new folder, never half of one. A file labelwise did not write is never removed: a
folder of the user's is only written into when they allow it (``overwrite``), and then only files of the
names labelwise writes are replaced.

A full disk, a quota or a permission problem becomes one :class:`~labelwise.errors.WriteError` line naming
the path (and, for a full disk, the bytes needed); the temporary copy is removed on the way out, and those
left by a run that was killed are removed by the next write to the same name. Files get the user's umask.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from labelwise.errors import LabelwiseError, OutputExistsError, WriteError

log = logging.getLogger("labelwise")

_STARTED = time.time()  # temporary files of an older labelwise (no process id in the name) older than this are stale
_WRITE_PROBLEMS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                   errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                   errno.EROFS: "read-only file system"}


# ---- what labelwise writes -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutputKind:
    """A folder labelwise writes as a whole: its marker file and the names of the entries it writes."""

    name: str  # as a user says it: checkpoint, ONNX export, retrieval index
    marker: str  # a folder holding this file (and none of ``others``) was written by labelwise as this kind
    owns: tuple[str, ...]  # glob patterns of the top-level names labelwise writes in such a folder
    others: tuple[str, ...] = ()  # markers of other kinds

    def holds(self, folder: Path) -> bool:
        return (folder / self.marker).is_file() and not any((folder / m).exists() for m in self.others)

    def owns_name(self, name: str) -> bool:
        return any(fnmatch(name, pattern) for pattern in self.owns)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "*.model", "sentencepiece*", "spiece*", "chat_template*")
CHECKPOINT = OutputKind("checkpoint", "labelwise.json",
                        ("encoder", "head.safetensors", "labelwise.json", "README.md", "config.json",
                         "model.safetensors", *TOKENIZER_FILES), others=("export.json", "index.json"))
INDEX = OutputKind("retrieval index", "index.json", ("index.json", "vectors.safetensors", "texts.jsonl", "milvus.db"))


# ---- sizes, modes, errors ------------------------------------------------------------------------------------

def folder_size(path: str | os.PathLike) -> int:
    """Bytes of the files under ``path`` (a file: its size); 0 for nothing."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def human_size(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give folder ``path`` and everything under it the modes a plain write would: 0666 (0777 for folders and
    executables) less the umask. Temporary files and some writers (safetensors) make files owner-only."""
    mask = umask()
    for root, _, names in os.walk(path):
        os.chmod(root, 0o777 & ~mask)
        for name in names:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                executable = os.stat(full).st_mode & 0o111
                os.chmod(full, (0o777 if executable else 0o666) & ~mask)


def write_errno(err: BaseException) -> int | None:
    """The errno of a failed write: an OSError's, or the one a Rust writer (safetensors) puts in its message."""
    seen = set()
    while err is not None and id(err) not in seen and not isinstance(err, LabelwiseError):
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno:
            return err.errno
        found = re.search(r"os error (\d+)|\[Errno (\d+)\]", str(err))
        if found:
            return int(found.group(1) or found.group(2))
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return None


def write_error(err: BaseException, path: str | os.PathLike, needed: int | None = None,
                at_least: bool = False) -> WriteError | None:
    """One line for a write that failed for want of space or permission; None for any other failure."""
    code = write_errno(err)
    if code not in _WRITE_PROBLEMS:
        return None
    problem = _WRITE_PROBLEMS[code]
    if code in (errno.ENOSPC, errno.EDQUOT):
        where = Path(os.path.abspath(path)).parent
        while not where.exists() and where != where.parent:
            where = where.parent
        try:
            available = shutil.disk_usage(where).free  # measured after the partial files were removed
        except OSError:
            available = None
        size = f"{'at least ' if at_least else 'about '}{human_size(needed)}" if needed else "more space"
        if available is None:
            free = ""
        elif needed and available >= needed:  # the result would fit: its temporary copies did not
            size += " for the result, and more for its temporary copies while it is written"
            free = f"; {human_size(available)} are free there now that the partial files are removed"
        else:
            free = f", {human_size(available)} free there"
        return WriteError(f"{path}: cannot write it: {problem} (it needs {size}{free}); free some space or write "
                          "it elsewhere; nothing was left half-written", path, code, needed)
    return WriteError(f"{path}: cannot write it: {problem}; choose a place you can write to, or fix its "
                      "permissions", path, code, needed)


# ---- temporary files left by a killed run --------------------------------------------------------------------

def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    try:  # a killed process not yet reaped by its parent
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings ``.NAME.*.tmp`` of ``path`` left by a labelwise run that no longer runs.

    A folder set aside during a swap (``.NAME.<pid>.old``) is put back when ``path`` itself is missing (the run
    died between the two renames), else removed. Returns what was removed or put back; each is logged.
    """
    path = Path(os.path.abspath(path))
    name = re.escape(path.name)
    ours = re.compile(rf"\.{name}\.(\d+)-[^/]*\.tmp|\.{name}\.(\d+)\.old|\.{name}\.old-(\d+)")
    legacy = re.compile(rf"\.{name}\.[a-z0-9_]{{8}}\.tmp")  # an older labelwise's (tempfile's) names
    found = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return found
    for entry in entries:
        match = ours.fullmatch(entry.name)
        if match:
            pid = int(next(g for g in match.groups() if g))
            if _alive(pid):
                continue
        elif not legacy.fullmatch(entry.name) or entry.stat(follow_symlinks=False).st_mtime >= _STARTED:
            continue
        stale = Path(entry.path)
        if entry.name.endswith(".tmp") or os.path.lexists(path):
            size = folder_size(stale)
            _remove(stale)
            log.warning("removed %s (%s), left by a labelwise run that was interrupted", stale, human_size(size))
        else:
            os.replace(stale, path)
            log.warning("put back %s as %s: a labelwise run was interrupted while replacing it", stale, path)
        found.append(stale)
    return found


# ---- the guard -----------------------------------------------------------------------------------------------

def prepare_output_dir(path: str | os.PathLike, kind: OutputKind, *, overwrite: bool = False,
                       inputs: Mapping[str, str | os.PathLike | None] | None = None,
                       can_overwrite: bool = True) -> Path:
    """Check, before any work, that ``path`` may receive a ``kind`` folder; returns it as a Path.

    Allowed: a missing or empty folder, a folder labelwise wrote as the same kind (it is replaced), or, with
    ``overwrite``, any folder (labelwise's files go into it; files of other names stay). Never allowed: a
    file, and one of ``inputs`` ({parameter name: path}) or a folder that holds one, whatever ``overwrite``
    says. Stale temporary copies of ``path`` are removed first (:func:`remove_stale`).
    """
    path = Path(path)
    target = path.resolve()
    for name, given in (inputs or {}).items():
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source:
            raise LabelwiseError(f"{path}: this is also `{name}`, an input; labelwise never writes its {kind.name} "
                                 "into an input folder, not even when overwriting is allowed: choose another folder")
        if target in source.parents:
            raise LabelwiseError(f"{path}: this folder holds `{name}` ({given}), an input; choose another "
                                 f"folder for the {kind.name}")
    remove_stale(path)
    if os.path.lexists(path) and not path.is_dir():
        raise LabelwiseError(f"{path}: exists and is not a folder; choose a folder for the {kind.name}")
    if path.is_dir() and not overwrite and not kind.holds(path) and any(path.iterdir()):
        way_out = (", or allow writing into it (labelwise's files replace those of the same names, the others "
                   "stay)") if can_overwrite else ""
        raise OutputExistsError(f"{path}: not empty and not written by labelwise as a {kind.name} (no "
                                f"{kind.marker}); choose a new or empty folder{way_out}", [path])
    return path


def check_outputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None] = (), *,
                  overwrite: bool = False, marker: str | None = None) -> list[Path]:
    """The guard before writing output files a user names; returns ``outputs`` as paths.

    Refuses (:class:`~labelwise.errors.LabelwiseError`) an output that is also one of ``inputs`` (compared
    after resolving links and ``..``), and a folder replaced as a whole (``marker`` given) that holds one.
    Refuses (:class:`~labelwise.errors.OutputExistsError`) to replace what exists: files unless ``overwrite``;
    with ``marker``, a file or a non-empty folder without ``marker`` in it (labelwise did not write it),
    whatever ``overwrite`` says. Messages name the paths, never a command-line flag. (Model and index
    folders use :func:`prepare_output_dir`.)
    """
    outputs = [Path(p) for p in outputs]
    sources = [(Path(p), Path(p).resolve()) for p in inputs if p is not None]
    for out in outputs:
        target = out.resolve()
        for given, source in sources:
            named = "" if str(given) == str(out) else f" ({given})"
            if target == source:
                raise LabelwiseError(f"{out}: this output is also an input{named}; choose another output path")
            if marker and target in source.parents:
                raise LabelwiseError(f"{out}: this folder would be replaced as a whole, but it holds the input "
                                     f"{given}; choose another output folder")
    if marker:
        foreign = [p for p in outputs
                   if p.exists() and (not p.is_dir() or (any(p.iterdir()) and not (p / marker).exists()))]
        if foreign:
            raise OutputExistsError(f"{', '.join(map(str, foreign))}: exists and was not written by labelwise (no "
                                    f"{marker}); it would be replaced as a whole, so choose a new or empty folder",
                                    foreign)
    elif not overwrite:
        existing = [p for p in outputs if p.exists()]
        if existing:
            one = len(existing) == 1
            raise OutputExistsError(f"{', '.join(map(str, existing))}: already exist{'s' if one else ''}; choose "
                                    f"another output path or allow overwriting {'it' if one else 'them'}", existing)
    return outputs


# ---- atomic writes -------------------------------------------------------------------------------------------

def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}-"


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder, then rename."""
    path = Path(path)
    target = Path(os.path.abspath(path))
    data = text.encode("utf-8")
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it owner-only
        os.replace(tmp, target)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        failure = write_error(err, path, len(data))
        if failure is not None:
            raise failure from None
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


@contextmanager
def atomic_dir(path: str | os.PathLike, kind: OutputKind | None = None, *, size_hint: int | None = None
               ) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it takes the place of ``path``.

    The old folder is only set aside once the new one is complete, so a crash at any point leaves either the
    old or the new folder in place. With ``kind``, entries of the old folder that labelwise did not write (not
    among ``kind.owns``, or any entry when the folder is not of that kind) are kept: the new entries then go
    into the folder one by one, the marker last. Without ``kind`` the folder is replaced as a whole (folders
    only labelwise writes). Call :func:`prepare_output_dir` first. ``size_hint``: the bytes the folder will
    take, for the message when the disk is full.
    """
    target = Path(os.path.abspath(path))
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
        yield tmp
        apply_umask(tmp)
        _install(tmp, target, kind)
    except BaseException as err:
        written = folder_size(tmp) if tmp is not None and tmp.exists() else 0
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        failure = write_error(err, path, size_hint or max(written, folder_size(target)) or None,
                              at_least=not size_hint)
        if failure is not None:
            raise failure from None
        raise


def _install(tmp: Path, target: Path, kind: OutputKind | None) -> None:
    if not os.path.lexists(target):
        os.replace(tmp, target)
        return
    new = {p.name for p in tmp.iterdir()}
    own = kind is None or kind.holds(target)
    keep = [] if kind is None else [p for p in target.iterdir()
                                    if p.name not in new and not (own and kind.owns_name(p.name))]
    aside = target.with_name(f".{target.name}.{os.getpid()}.old")
    _remove(aside)
    if not keep:  # nothing of the user's in it: swap the folders
        os.replace(target, aside)
        os.replace(tmp, target)
        _remove(aside)
        return
    # files of the user's stay: move labelwise's entries in one by one, the marker first out and last in
    aside.mkdir()
    names = sorted(new - {kind.marker}) + ([kind.marker] if kind.marker in new else [])
    if os.path.lexists(target / kind.marker):
        os.replace(target / kind.marker, aside / kind.marker)
    stale = [p.name for p in target.iterdir() if own and kind.owns_name(p.name) and p.name not in new]
    for name in stale:
        os.replace(target / name, aside / name)
    for name in names:
        if os.path.lexists(target / name):
            os.replace(target / name, aside / name)
        os.replace(tmp / name, target / name)
    _remove(aside)
    tmp.rmdir()


__all__ = ["CHECKPOINT", "INDEX", "OutputKind", "apply_umask", "atomic_dir", "atomic_write_json",
           "atomic_write_text", "check_outputs", "folder_size", "human_size", "prepare_output_dir",
           "remove_stale", "umask", "write_errno", "write_error"]
