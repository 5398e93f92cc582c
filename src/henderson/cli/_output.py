"""Where a command writes: every output is staged beside itself and renamed into place.

One run of a command is one set of results. A command writes into a hidden staging
directory created next to its ``--out`` (same file system, so the final rename is
atomic) and only :meth:`Outputs.commit` at the very end moves the results into place.
An error, Ctrl-C or a full disk before that leaves the previous results untouched and
no half-written file anywhere: :meth:`Outputs.abort` removes the staging directory.

Two kinds of output:

* :class:`OutDir` -- ``--out DIR`` of fit, gblup, snpblup, pblup, cv and demo. Every file
  the previous run wrote (``summary.json``'s ``outputs``) is replaced, so stale files of
  an earlier run cannot sit next to new ones; entries of the user's own beside them are
  carried over. A non-empty ``DIR`` is reused only when its ``summary.json`` shows the
  results of the same command on the same trait (or with ``--force``), and never when it
  holds no henderson ``summary.json``.
* :class:`OutFiles` -- a file (``grm``, ``ainv``, ``predict``, ``--inbreeding``) or a file
  prefix (``grm --format gcta``): written in a staging directory beside them, then each
  renamed over its target.

Every problem with an output path is an :class:`OutputError` (exit code 2) naming the
option: an existing file where a directory is expected (or the reverse), a path below a
file, a missing parent directory, a read-only file system, no permission, a full disk.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..spec.formula import response_of
from ._errors import CLIError

#: Marks henderson's staging directories (``.NAME.<random>.henderson-tmp``).
STAGE_SUFFIX = ".henderson-tmp"

#: errno values that can only mean "the output cannot be written", whatever file the
#: system names (reading an input never fills a disk).
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


class OutputError(CLIError):
    """An output path cannot be written (a user error: exit code 2)."""


def _why(err: OSError) -> str:
    """The system's reason, lower case: 'read-only file system', 'no space left on device'."""
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]


def _check_parent(path: Path, option: str) -> Path:
    """The existing parent directory of ``path``; an OutputError if it is missing or a file."""
    parent = path.parent if str(path.parent) else Path(".")
    if parent.is_dir():
        return parent
    up = parent
    while not up.exists() and up != up.parent:
        up = up.parent
    if up.exists() and not up.is_dir():
        raise OutputError(f"{option} {path}: {up} is a file, not a directory")
    raise OutputError(f"{option} {path}: the directory {parent} does not exist (create it first)")


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def _mkstage(parent: Path, name: str, option: str, path: Path) -> Path:
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=STAGE_SUFFIX, dir=parent))
        # mkdtemp makes it private (0700); the results directory gets the usual permissions
        os.chmod(stage, 0o777 & ~_umask())
        return stage
    except OSError as err:
        raise OutputError(f"{option} {path}: cannot write in {parent}: {_why(err)}") from err


@contextmanager
def _no_interrupt():
    """Hold Ctrl-C back while the results are renamed into place (a few system calls)."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to hold back
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _files(root: Path) -> list[str]:
    """Every file below ``root``, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())


def previous_run(path: Path) -> dict | None:
    """What ``summary.json`` in ``path`` says about the run that wrote it, or None.

    ``{"command", "trait", "outputs"}``; summaries written before ``run`` was recorded
    give the trait from their settings.
    """
    try:
        doc = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or "command" not in doc:
        return None
    run = doc.get("run") or {}
    settings = doc.get("settings") or {}
    trait = settings.get("trait")
    if trait is None and "~" in str(settings.get("formula", "")):
        trait = response_of(settings["formula"])
    return {
        "command": run.get("command", doc["command"]),
        "trait": run.get("trait", trait),
        "outputs": list(doc.get("outputs") or []),
    }


class _Staged:
    """Outputs written to a staging directory first (``self.stage``, None once committed or aborted)."""

    stage: Path | None = None

    @property
    def staging(self) -> Path:
        """The staging directory of an opened output (an error before ``open`` or after ``commit``)."""
        if self.stage is None:
            raise RuntimeError(f"{type(self).__name__}: the output is not open (open() it before writing)")
        return self.stage

    def abort(self) -> None:
        """Remove the staging directory: the previous results stay as they were."""
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage = None

    def contains(self, filename) -> bool:
        """Whether ``filename`` is inside the staging directory."""
        return self.stage is not None and _below(filename, self.stage)


class OutDir(_Staged):
    """``--out DIR``: a results directory replaced as a whole at the end of the run."""

    def __init__(self, path, command: str, trait: str | None = None, force: bool = False, option: str = "--out"):
        self.path = Path(path)
        self.option = option
        self.command, self.trait, self.force = command, trait, force
        self.stage: Path | None = None
        #: top-level entries of an existing --out that are not henderson's (carried over)
        self.keep: list[str] = []

    def open(self) -> OutDir:
        """Check the path (before any work is done) and create the staging directory."""
        p, opt = self.path, self.option
        if p.is_symlink() and p.is_dir():  # replace what the link points to, keep the link
            p = self.path = p.resolve()
        if p.exists() and not p.is_dir():
            raise OutputError(f"{opt} {p}: is a file; {opt} names a directory (created if absent)")
        parent = _check_parent(p, opt)
        if p.is_dir():
            self._check_replaceable(p)
        self.stage = _mkstage(parent, p.name or "out", opt, p)
        return self

    def _check_replaceable(self, p: Path) -> None:
        opt = self.option
        present = _files(p)
        if not present:
            return
        prev = previous_run(p)
        if prev is None:
            raise OutputError(
                f"{opt} {p}: the directory is not empty and holds no henderson summary.json "
                f"({len(present)} file(s), e.g. {present[0]!r}); henderson replaces the whole "
                f"directory, so give a new or empty one"
            )
        owned = set(prev["outputs"]) | {"summary.json"}
        if prev["command"] == "demo" and not any(f.startswith("data/") for f in owned):
            owned |= {f for f in present if f.startswith("data/")}  # summaries before 'run' listed no data/
        tops = {f.split("/", 1)[0] for f in owned}
        # entries of the user's own next to the results (e.g. the README's tour run inside
        # henderson-demo/) are carried over into the new directory, never deleted
        self.keep = sorted(e.name for e in p.iterdir() if e.name not in tops)
        mixed = [f for f in present if f not in owned and f.split("/", 1)[0] in tops]
        if mixed:  # a file of the user's inside a directory henderson writes
            shown = ", ".join(repr(f) for f in mixed[:5]) + (f" and {len(mixed) - 5} more" if len(mixed) > 5 else "")
            raise OutputError(
                f"{opt} {p}: holds file(s) henderson did not write inside its own output "
                f"({shown}); move them or give another {opt}"
            )
        same = prev["command"] == self.command and prev["trait"] == self.trait
        if not same and not self.force:

            def what(cmd, trait):
                return f"'{cmd}'" + (f" on trait {trait!r}" if trait else "")

            raise OutputError(
                f"{opt} {p}: holds the results of {what(prev['command'], prev['trait'])}; this run "
                f"is {what(self.command, self.trait)}. Give another {opt}, or --force to replace them"
            )

    def where(self, name: str = "") -> Path:
        """Where to write ``name`` during the run (inside the staging directory)."""
        return self.staging / name if name else self.staging

    def files(self) -> list[str]:
        return _files(self.staging)

    def commit(self) -> None:
        """Rename the staging directory into place; the previous results go only now."""
        p, stage = self.path, self.staging
        clash = [n for n in self.keep if (stage / n).exists()]
        if clash:
            raise OutputError(
                f"{self.option} {p}: this run writes {', '.join(map(repr, clash))}, which henderson "
                f"did not write there before; move them or give another {self.option}"
            )
        with _no_interrupt():
            try:
                if not p.exists():
                    os.rename(stage, p)
                elif _exchange(stage, p):
                    self._carry_over(stage)
                    shutil.rmtree(stage, ignore_errors=True)  # now holds the previous results
                else:  # two renames: the previous results are put back if the second fails
                    old = Path(tempfile.mkdtemp(prefix=f".{p.name}.old.", suffix=STAGE_SUFFIX, dir=p.parent))
                    os.rmdir(old)
                    os.rename(p, old)
                    try:
                        os.rename(stage, p)
                    except OSError:
                        os.rename(old, p)
                        raise
                    self._carry_over(old)
                    shutil.rmtree(old, ignore_errors=True)
            except OSError as err:
                raise OutputError(
                    f"{self.option} {p}: cannot move the results into place: {_why(err)}; they are in {stage}"
                ) from err
        self.stage = None

    def _carry_over(self, old: Path) -> None:
        """Move the user's own entries from the previous directory into the new one."""
        for name in self.keep:
            if (old / name).exists() or (old / name).is_symlink():
                os.rename(old / name, self.path / name)


class OutFiles(_Staged):
    """Output files named by an option (a file, or the files of a prefix), replaced at the end."""

    def __init__(self, paths, option: str = "--out", kind: str = "file"):
        self.paths = [Path(p) for p in paths]
        self.option = option
        self.kind = kind
        self.stage: Path | None = None

    @property
    def path(self) -> Path:
        return self.paths[0]

    def open(self) -> OutFiles:
        opt = self.option
        parents = {_check_parent(p, opt) for p in self.paths}
        for p in self.paths:
            if p.is_dir():
                raise OutputError(
                    f"{opt} {p}: is a directory; {opt} names a {self.kind} here "
                    f"(e.g. {p / ('out' + (p.suffix or '.csv'))})"
                )
        if len(parents) != 1:  # pragma: no cover - a prefix's files share their directory
            raise OutputError(f"{opt}: the output files must be in one directory")
        self.stage = _mkstage(parents.pop(), self.path.name, opt, self.path)
        return self

    def where(self, path) -> Path:
        """Where to write the output ``path`` (one of ``self.paths``) during the run."""
        return self.staging / Path(path).name

    def commit(self) -> None:
        stage = self.staging
        with _no_interrupt():
            try:
                for p in self.paths:
                    src = stage / p.name
                    if src.exists():
                        os.replace(src, p)
            except OSError as err:
                raise OutputError(f"{self.option} {p}: cannot move the result into place: {_why(err)}") from err
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        self.stage = None


def _below(filename, root: Path) -> bool:
    if filename is None:
        return False
    try:
        return Path(os.fsdecode(filename)).resolve().is_relative_to(root.resolve())
    except (OSError, ValueError, TypeError):
        return False
