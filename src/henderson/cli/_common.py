"""What every command shares: options, progress, thread limits, outputs, summary.json."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console

from .._progress import reporting
from ._inputs import checksums
from ._output import DISK_ERRNOS, OutDir, OutFiles, OutputError

# Options shared by every command (typer has no option inheritance; aliases keep it short).
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="Limit BLAS/OpenMP/numba threads (threadpoolctl). Default: all cores."),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786): run the SNP chunks of G (and CV folds) "
        "as tasks on that cluster; a PLINK file is then read by the workers (docs/scaling.md). Default: in-process.",
    ),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Replace a non-empty --out that holds the results of another command or trait.")
]
#: --out of the commands that write a results directory
OutDirOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Output directory: created, or replaced as a whole at the end of the run "
        "(only if it holds this command's results on this trait, or with --force).",
    ),
]

#: Set by :func:`start`; read by ``main`` to decide whether to print tracebacks.
STATE: dict[str, Any] = {"debug": False, "quiet": False, "warnings": [], "session": None}


def versions() -> dict:
    import scipy

    from .._version import __version__

    out = {
        "henderson": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
    }
    for mod in ("matplotlib", "typer", "numba", "threadpoolctl"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            pass
    return out


def _noop(*args, **kwargs) -> None:
    return None


def _progress_stream():
    """Where progress goes: a duplicate of stderr's descriptor when stderr is a terminal.

    Reading a VCF redirects descriptor 2 for a moment to catch htslib's messages (see
    ``_inputs.c_stderr_to_warnings``); a duplicate keeps the spinner on the terminal.
    """
    try:
        fd = sys.stderr.fileno()
        if os.isatty(fd):
            return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None))
    except (AttributeError, ValueError, OSError):
        pass
    return None


class Session:
    """One command run: console output, timed steps, inputs, outputs and the summary.

    Output rules: results (tables, "Wrote ...") go to stdout; progress (a rich spinner
    per step, a bar with counts for CV folds, step times) goes to stderr and only when
    stderr is a terminal; warnings go to stderr. ``--quiet`` prints nothing but errors
    (warnings are still kept in summary.json).
    """

    def __init__(
        self,
        command: str,
        quiet: bool = False,
        debug: bool = False,
        threads: int | None = None,
        out: Path | None = None,
        *,
        trait: str | None = None,
        force: bool = False,
    ):
        import uuid

        self.command = command
        #: names this run in summary.json, model.json and snp_effects.csv (predict checks it)
        self.run_id = uuid.uuid4().hex
        self.trait = trait
        self.quiet = quiet
        stream = None if quiet else _progress_stream()
        self.console = Console(file=stream, stderr=stream is None, quiet=quiet, highlight=False)
        self.stdout = Console(quiet=quiet, highlight=False, soft_wrap=True)
        #: spinners and bars only for a person watching a terminal
        self.live = not quiet and self.console.is_terminal
        self.timings: dict[str, float] = {}
        self.inputs: list[dict] = []
        self.outputs: list[str] = []
        self.notes: list[str] = []
        self.settings: dict = {}
        self.t0 = time.perf_counter()
        self._limits = None
        self._outputs: list = []
        STATE["debug"] = debug
        STATE["quiet"] = quiet
        STATE["warnings"] = []
        STATE["session"] = self  # main() aborts the staged outputs if the run fails
        # the output path is checked (and its staging directory made) before any work
        self._dir = self._open(OutDir(out, command, trait, force)) if out is not None else None
        self.out = self._dir.path if self._dir is not None else None
        if threads:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=threads)
            try:
                import numba

                numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]  # set at import from the environment
            except Exception:  # pragma: no cover
                pass
        self.settings["threads"] = threads
        warnings.filterwarnings("ignore", category=FutureWarning)

    # ---------------------------------------------------------------- progress
    @contextmanager
    def step(self, what: str, counted: str | None = None, library_hook: bool = True):
        """Time a step, showing a spinner with its name and elapsed time on a terminal.

        With ``counted`` (e.g. ``"folds"``, ``"SNPs"``) a bar with done/total counts is
        shown instead and the step yields ``update(done, total, *rest)``; unless
        ``library_hook`` is False it is also installed as henderson's progress callback
        (:mod:`henderson._progress`), which G's SNP blocks and REML iterations report to.
        Give ``library_hook=False`` when ``update`` is passed to a ``progress=`` argument
        instead (cross-validation: the folds' own REML must not move the fold bar).
        """
        t = time.perf_counter()
        if not self.live:
            yield _noop
        else:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            cols = [SpinnerColumn("dots"), TextColumn("{task.description}")]
            if counted:
                cols += [BarColumn(bar_width=30), MofNCompleteColumn(), TextColumn(counted)]
            cols.append(TimeElapsedColumn())
            with Progress(*cols, console=self.console, transient=True) as bar:
                task = bar.add_task(what, total=None)

                def update(done, total=None, *rest, **kw):
                    bar.update(task, completed=done, **({"total": total} if total is not None else {}))

                if counted and library_hook:
                    with reporting(update):
                        yield update
                else:
                    yield update if counted else _noop
        dt = time.perf_counter() - t
        self.timings[what] = round(dt, 4)
        if self.live and dt >= 1.0:
            self.console.print(f"[dim]  {what}: {dt:.1f} s[/dim]")

    def info(self, msg: str) -> None:
        """A line of the results (stdout; nothing with --quiet)."""
        self.stdout.print(msg)

    def warn(self, msg: str) -> None:
        """A warning on stderr (kept in summary.json's notes; not printed with --quiet)."""
        self.notes.append(msg)
        if not self.quiet:
            print(f"henderson: warning: {msg}", file=sys.stderr)

    # ---------------------------------------------------------------- inputs / outputs
    def add_input(self, role: str, path) -> None:
        """Record an input's files (path, SHA-256, bytes) under ``role`` for summary.json."""
        if path is None:
            return
        self.inputs += [{"role": role, **f} for f in checksums(path)]

    def _open(self, output):
        self._outputs.append(output.open())
        return output

    def output_files(self, paths, option: str = "--out", kind: str = "file") -> OutFiles:
        """Register output files (not in --out DIR): written beside, renamed at :meth:`done`."""
        return self._open(OutFiles(paths, option, kind))

    @property
    def result_dir(self) -> Path:
        """The --out directory, where the results are once the run is done."""
        if self.out is None:
            raise RuntimeError("this command was started without --out DIR")
        return self.out

    def outdir(self) -> Path:
        """Where this run writes its results: the staging directory of --out."""
        if self._dir is None:
            raise RuntimeError("this command was started without --out DIR")
        return self._dir.where()

    def commit(self) -> None:
        """Move every output into place (the end of a successful run)."""
        for o in self._outputs:
            o.commit()
        self._outputs = []

    def abort(self) -> None:
        """Remove every staged output: the previous results stay as they were."""
        for o in self._outputs:
            o.abort()
        self._outputs = []
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None

    def output_error(self, exc: BaseException) -> OutputError | None:
        """An OSError raised while writing an output, as a one-line error naming its option."""
        if not isinstance(exc, OSError) or not self._outputs:
            return None
        mine = [o for o in self._outputs if o.contains(exc.filename)]
        if not mine and exc.errno not in DISK_ERRNOS:
            return None
        o = (mine or self._outputs)[0]
        name = Path(os.fsdecode(exc.filename)).name if exc.filename else None
        why = (exc.strerror or str(exc)).rstrip(".")
        where = f" while writing {name}" if name else ""
        kept = "the previous results are unchanged" if o.path.exists() else "nothing was written"
        return OutputError(f"{o.option} {o.path}: {why[:1].lower() + why[1:]}{where}; {kept}")

    def write_csv(self, frame: pd.DataFrame, name: str, index: bool = False) -> Path:
        path = self.outdir() / name
        frame.to_csv(path, index=index, float_format="%.10g")
        self.outputs.append(name)
        return path

    def write_text(self, text: str, name: str) -> Path:
        path = self.outdir() / name
        path.write_text(text, encoding="utf-8")
        self.outputs.append(name)
        return path

    def write_json(self, doc: dict, name: str) -> Path:
        """Strict JSON: NaN/inf become null in :func:`_jsonable`; ``allow_nan=False`` proves it."""
        return self.write_text(json.dumps(_jsonable(doc), indent=2, allow_nan=False), name)

    def write_summary(self, results: dict, name: str = "summary.json") -> Path:
        self.timings["total"] = round(time.perf_counter() - self.t0, 4)
        files = self._dir.files() if self._dir is not None else list(self.outputs)
        doc = {
            "command": self.command,
            # what --out holds: the next run into the same directory checks it
            "run": {"command": self.command, "trait": self.trait, "run_id": self.run_id},
            "argv": sys.argv[1:] if Path(sys.argv[0]).name.startswith("henderson") else None,
            "settings": self.settings,
            "versions": versions(),
            "inputs": self.inputs,
            "outputs": sorted(set(files + self.outputs + [name])),
            "timings_seconds": self.timings,
            "notes": self.notes,
            "warnings": list(STATE.get("warnings", [])),
            "results": results,
        }
        return self.write_json(doc, name)

    def done(self) -> None:
        """The end of a successful run: outputs renamed into place, then "Wrote ..."."""
        self.commit()
        STATE["session"] = None
        if self.out is not None and self.outputs:
            files = ", ".join(sorted(set(self.outputs)))
            self.stdout.print(f"Wrote {self.out}/: {files}")
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None


def _jsonable(x):
    """Plain JSON values; NaN and ±inf (not JSON) become null."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, (str, int)):
        return x
    if x is pd.NA or x is pd.NaT:
        return None
    return str(x)


def bv_table(blups: pd.DataFrame, term: str | None = None) -> pd.DataFrame:
    """BLUP table (by level id) → breeding_values.csv layout, best first."""
    multi = isinstance(blups.index, pd.MultiIndex)  # (level, component) of a structured term
    t = pd.DataFrame(
        {
            "id": (blups.index.get_level_values(0) if multi else blups.index).astype(str),
            "value": blups.iloc[:, 0].to_numpy(),
            "pev": blups["pev"].to_numpy(),
            "reliability": blups["reliability"].to_numpy(),
            "n_records": blups["n_records"].to_numpy(),
        }
    )
    if multi:
        t.insert(1, "component", blups.index.get_level_values(1).astype(str))
    if term is not None:
        t.insert(0, "term", term)
    return t.sort_values("value", ascending=False, kind="stable").reset_index(drop=True)


def vc_table(vc: pd.DataFrame) -> pd.DataFrame:
    """variance_components.csv: one row per term and Residual."""
    t = vc.copy()
    # structured fits: one row per parameter θ, with its term as a column
    t.index.name = "parameter" if "term" in t.columns else "term"
    return t.reset_index()


def fe_table(fe: pd.DataFrame) -> pd.DataFrame:
    t = fe.copy()
    t.index.name = "effect"
    return t.reset_index()
