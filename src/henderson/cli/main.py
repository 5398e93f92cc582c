"""The ``henderson`` command line (typer).

Commands: ``fit``, ``gblup``, ``snpblup``, ``pblup``, ``predict``, ``grm``, ``ainv``,
``cv``, ``demo``. Every command has ``--help``; errors print one line naming the
file/line/column/id and exit with 2 (user error) or 1 (internal error); ``--debug``
shows the traceback.
"""

from __future__ import annotations

import sys
import warnings

import click
import typer

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


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       is_eager=True)):
    if version:
        from .. import __version__

        typer.echo(f"henderson {__version__}")
        raise typer.Exit(0)


def _register() -> None:
    from . import cv_cmd, demo_cmd, fit_cmd, genetic_cmd, relationship_cmd

    app.command("fit")(fit_cmd.fit)
    app.command("gblup")(genetic_cmd.gblup)
    app.command("snpblup")(genetic_cmd.snpblup)
    app.command("pblup")(genetic_cmd.pblup)
    app.command("predict")(genetic_cmd.predict)
    app.command("grm")(relationship_cmd.grm)
    app.command("ainv")(relationship_cmd.ainv)
    app.command("cv")(cv_cmd.cv)
    app.command("demo")(demo_cmd.demo)


_register()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    from ..errors import HendersonWarning

    if category is FutureWarning or category is DeprecationWarning:
        return
    label = category.__name__ if not issubclass(category, HendersonWarning) else "warning"
    print(f"henderson: {label}: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``henderson`` script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    STATE["debug"] = "--debug" in args
    command = typer.main.get_command(app)
    old = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        rv = command.main(args=args, prog_name="henderson", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        print("henderson: aborted", file=sys.stderr)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        print("henderson: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place errors become exit codes
        return report_exception(e, STATE["debug"] or "--debug" in args)
    finally:
        warnings.showwarning = old
        sys.stdout.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
