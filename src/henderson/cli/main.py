"""The ``henderson`` command line (typer).

Commands: ``fit``, ``gblup``, ``snpblup``, ``pblup``, ``predict``, ``grm``, ``ainv``,
``cv``, ``demo``. Every command has ``--help``; errors print one line naming the
file/line/column/id and exit with 2 (user error) or 1 (internal error); ``--debug``
shows the traceback.
"""

from __future__ import annotations

import sys
import warnings

import typer

try:  # typer >= 0.2x vendors its own click; older releases use click itself
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover
    from click import exceptions as _cx  # type: ignore[no-redef]  # older typer vendors no click

from ._common import STATE
from ._errors import report_exception

app = typer.Typer(
    name="henderson",
    help="Linear mixed models for animal and plant breeding: REML, BLUP, GBLUP, SNP-BLUP, "
    "cross-validation. Run 'henderson demo' for a worked example on bundled wheat data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True)):
    if version:
        from .._version import __version__

        typer.echo(f"henderson {__version__}")
        raise typer.Exit(0)
    ctx = _click_context()
    if ctx is not None and ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _click_context():
    try:
        from typer._click import get_current_context
    except ImportError:  # pragma: no cover
        from click import get_current_context
    return get_current_context(silent=True)


def _register() -> None:
    from . import cv_cmd, demo_cmd, fit_cmd, genetic_cmd, gwas_cmd, relationship_cmd

    short = {
        "fit": (fit_cmd.fit, 'Linear mixed model from a formula, e.g. "Yield ~ Env + (1|Name)".'),
        "gblup": (genetic_cmd.gblup, "Genomic BLUP from phenotypes and genotypes (or a GRM)."),
        "snpblup": (genetic_cmd.snpblup, "SNP-BLUP (RR-BLUP): SNP effects and GEBVs."),
        "pblup": (genetic_cmd.pblup, "Pedigree BLUP (animal model with sparse A-inverse)."),
        "predict": (genetic_cmd.predict, "Score new genotypes with saved SNP effects."),
        "grm": (relationship_cmd.grm, "Genomic relationship matrix to CSV or GCTA binary."),
        "ainv": (relationship_cmd.ainv, "Pedigree A-inverse as a sparse id1,id2,value list."),
        "cv": (cv_cmd.cv, "Cross-validation: predictive ability per fold, report."),
        "demo": (demo_cmd.demo, "Worked example on the bundled wheat and potato data."),
        "gwas": (gwas_cmd.gwas, "SNP association (back-solved GBLUP or MLMA): Manhattan, QQ, windows."),
    }
    from . import ssgblup_cmd  # single-step GBLUP

    short["ssgblup"] = (ssgblup_cmd.ssgblup, "Single-step GBLUP (H-inverse from pedigree and genotypes).")
    for name, (func, text) in short.items():
        app.command(name, short_help=text)(func)  # type: ignore[type-var]  # typer's stub wants a TypeVar-bound callable


_register()


def _extra(name: str) -> tuple:
    """click's own Exit/Abort classes when they differ from typer's."""
    try:
        import click.exceptions as ce

        cls = getattr(ce, name, None)
        return (cls,) if cls is not None and cls is not getattr(typer, name) else ()
    except ImportError:  # pragma: no cover
        return ()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    from ..errors import HendersonWarning
    from ._errors import cli_words

    if category is FutureWarning or category is DeprecationWarning:
        return
    label = category.__name__ if not issubclass(category, HendersonWarning) else "warning"
    # one line, in command-line words (--coding, not coding=); a multi-line message
    # (e.g. REML's iteration log) in full only with --debug
    lines = [ln.rstrip() for ln in str(message).splitlines() if ln.strip()] or [""]
    STATE.setdefault("warnings", []).append(cli_words(" ".join(ln.strip() for ln in lines)))
    if STATE.get("quiet"):  # --quiet prints nothing but errors; summary.json keeps the warning
        return
    text = "\n".join(lines) if STATE["debug"] else lines[0] + (" [...; --debug shows all]" if len(lines) > 1 else "")
    print(f"henderson: {label}: {cli_words(text)}", file=sys.stderr)


def interrupted(exc: BaseException | None) -> bool:
    """True when ``exc`` is, or was caused by, Ctrl-C.

    click turns KeyboardInterrupt into Abort; Ctrl-C inside a compiled (numba) kernel can
    surface as ``SystemError: ... returned a result with an exception set`` whose cause
    is the KeyboardInterrupt. Both are an interruption, not an error.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process stopped by Ctrl-C


def _interrupted_exit() -> int:
    print("henderson: interrupted", file=sys.stderr)
    return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``henderson`` script; returns the exit code.

    Ctrl-C at any point prints ``henderson: interrupted`` and returns 130; a failed or
    interrupted run removes its staged outputs, so ``--out`` keeps its previous results.
    """
    from .._startup import interrupt_received, release

    release()  # from here on Ctrl-C is a KeyboardInterrupt, handled below
    args = list(sys.argv[1:] if argv is None else argv)
    STATE["debug"] = "--debug" in args
    STATE.update(quiet=False, warnings=[], session=None)
    old = warnings.showwarning
    try:
        command = typer.main.get_command(app)
        warnings.showwarning = _show_warning
        # click's and typer's own main() would turn Ctrl-C into a silent exit 130 or an
        # "Aborted!": invoke the command directly so that every exception comes here
        with command.make_context("henderson", args) as ctx:
            rv = command.invoke(ctx)
        return int(rv) if isinstance(rv, int) else 0
    except (typer.Exit, *_extra("Exit")) as e:
        return e.exit_code
    except (typer.Abort, *_extra("Abort")) as e:
        if interrupted(e):
            return _interrupted_exit()
        print("henderson: aborted", file=sys.stderr)
        return INTERRUPTED
    except _cx.ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        return _interrupted_exit()
    except Exception as e:  # noqa: BLE001 - the one place errors become exit codes
        if interrupt_received():  # an error raised because Ctrl-C cut a read short
            return _interrupted_exit()
        return _error_exit(e, STATE["debug"] or "--debug" in args)
    finally:
        _abort_unfinished_session()
        warnings.showwarning = old
        sys.stdout.flush()


def _error_exit(e: Exception, debug: bool) -> int:
    """The exit code of a failed run, once the error is reported (an output error by its option)."""
    if interrupted(e):
        return _interrupted_exit()
    session = STATE.get("session")
    err = session.output_error(e) if session is not None else None
    if err is not None:
        err.__cause__ = e
    return report_exception(err or e, debug)


def _abort_unfinished_session() -> None:
    """A run that did not finish drops its staged outputs (the previous results stay)."""
    session = STATE.get("session")
    if session is not None:
        from ._output import _no_interrupt

        STATE["session"] = None
        with _no_interrupt():
            session.abort()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
