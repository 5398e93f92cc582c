"""What every command shares: options, progress, thread limits, outputs, summary.json."""

from __future__ import annotations

import json
import platform
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pandas as pd
import typer
from rich.console import Console

from ._inputs import checksums

# Options shared by every command (typer has no option inheritance; aliases keep it short).
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", min=1, help="Limit BLAS/OpenMP/numba threads (threadpoolctl). Default: all cores.")]

#: Set by :func:`start`; read by ``main`` to decide whether to print tracebacks.
STATE = {"debug": False}


def versions() -> dict:
    import scipy

    from .. import __version__

    out = {"henderson": __version__, "python": sys.version.split()[0], "numpy": np.__version__,
           "scipy": scipy.__version__, "pandas": pd.__version__, "platform": platform.platform()}
    for mod in ("matplotlib", "typer", "numba", "threadpoolctl"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            pass
    return out


class Session:
    """One command run: console output, timed steps, inputs, outputs and the summary."""

    def __init__(self, command: str, quiet: bool = False, debug: bool = False,
                 threads: int | None = None, out: Path | None = None):
        self.command = command
        self.quiet = quiet
        self.console = Console(stderr=True, quiet=quiet, highlight=False)
        self.stdout = Console(quiet=quiet, highlight=False, soft_wrap=True)
        self.timings: dict[str, float] = {}
        self.inputs: dict[str, dict] = {}
        self.outputs: list[str] = []
        self.notes: list[str] = []
        self.settings: dict = {}
        self.t0 = time.perf_counter()
        self.out = Path(out) if out is not None else None
        self._limits = None
        STATE["debug"] = debug
        if threads:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=threads)
            try:
                import numba

                numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            except Exception:  # pragma: no cover
                pass
        self.settings["threads"] = threads
        warnings.filterwarnings("ignore", category=FutureWarning)

    # ---------------------------------------------------------------- progress
    @contextmanager
    def step(self, what: str):
        """Time a step; a spinner shows while it runs (after a second it matters)."""
        t = time.perf_counter()
        if self.quiet or not self.console.is_terminal:
            yield
        else:
            with self.console.status(f"{what} ...", spinner="dots"):
                yield
        dt = time.perf_counter() - t
        self.timings[what] = round(dt, 4)
        if dt >= 1.0:
            self.console.print(f"[dim]  {what}: {dt:.1f} s[/dim]")

    def info(self, msg: str) -> None:
        self.console.print(msg)

    # ---------------------------------------------------------------- inputs / outputs
    def add_input(self, role: str, path) -> None:
        if path is None:
            return
        self.inputs[role] = {"path": str(path), "sha256": checksums(path)}

    def outdir(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out

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

    def write_summary(self, results: dict, name: str = "summary.json") -> Path:
        self.timings["total"] = round(time.perf_counter() - self.t0, 4)
        doc = {
            "command": self.command,
            "argv": sys.argv[1:] if Path(sys.argv[0]).name.startswith("henderson") else None,
            "settings": self.settings,
            "versions": versions(),
            "inputs": self.inputs,
            "outputs": sorted(set(self.outputs + [name])),
            "timings_seconds": self.timings,
            "notes": self.notes,
            "results": results,
        }
        path = self.outdir() / name
        path.write_text(json.dumps(_jsonable(doc), indent=2, allow_nan=True), encoding="utf-8")
        self.outputs.append(name)
        return path

    def done(self) -> None:
        if self.out is not None and self.outputs:
            files = ", ".join(sorted(set(self.outputs)))
            self.stdout.print(f"Wrote {self.out}/: {files}")
        if self._limits is not None:
            self._limits.restore_original_limits()


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def bv_table(blups: pd.DataFrame, term: str | None = None) -> pd.DataFrame:
    """BLUP table (by level id) → breeding_values.csv layout, best first."""
    t = pd.DataFrame({
        "id": blups.index.astype(str),
        "value": blups.iloc[:, 0].to_numpy(),
        "pev": blups["pev"].to_numpy(),
        "reliability": blups["reliability"].to_numpy(),
        "n_records": blups["n_records"].to_numpy(),
    })
    if term is not None:
        t.insert(0, "term", term)
    return t.sort_values("value", ascending=False, kind="stable").reset_index(drop=True)


def vc_table(vc: pd.DataFrame) -> pd.DataFrame:
    """variance_components.csv: one row per term and Residual."""
    t = vc.copy()
    t.index.name = "term"
    return t.reset_index()


def fe_table(fe: pd.DataFrame) -> pd.DataFrame:
    t = fe.copy()
    t.index.name = "effect"
    return t.reset_index()
