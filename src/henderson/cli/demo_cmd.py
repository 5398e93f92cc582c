"""``henderson demo``: the worked example on the bundled wheat and potato data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import DebugOpt, ForceOpt, QuietOpt, Session, ThreadsOpt


def demo(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output directory: created, or replaced as a whole at the end (only if it holds an earlier demo, or with --force).",
        ),
    ] = Path("henderson-demo"),
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
):
    """Worked example on bundled data: wheat GBLUP vs SNP-BLUP, 10-fold CV of three models, potato mixed model.

    Writes report.html and the tables to --out (default ./henderson-demo). Takes under a minute.
    """
    from ._demo import run_demo

    run_demo(Session("demo", quiet, debug, threads, out, force=force))
