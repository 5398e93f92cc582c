"""Turn exceptions into one readable line and an exit code.

User errors (bad files, bad ids, impossible models) exit with 2 and print one line
naming the file/line/column/id; anything else is an internal error (exit 1). The
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import sys
import traceback

import pandas as pd

from ..errors import HendersonError

#: Exit code of a user error (bad input, impossible model): click's usage-error code.
USER_ERROR = 2
#: Exit code of an unexpected internal error.
INTERNAL_ERROR = 1


class CLIError(Exception):
    """A user error detected by the command line itself (bad option combination...)."""


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip()
    if not msg:
        return type(exc).__name__
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    # keep multi-line messages (e.g. a printed pedigree loop) readable on one line
    return "; ".join(lines[:6]) + (" ..." if len(lines) > 6 else "")


#: The one table from Python-API parameters to command-line options. Each row is
#: (parameter, the advice as the library writes it, the same advice in command-line
#: terms). Library errors carry ``parameter``/``value`` (:class:`HendersonError`); the
#: rows of a parameter say how advice naming it reads on the command line. Warnings carry
#: no attributes, so every row is tried on them (plain substring replacement, in order:
#: a specific value before the bare ``parameter=``).
OPTIONS: tuple[tuple[str, str, str], ...] = (
    *(("coding", f"coding='{c}'", f"--coding {c}") for c in ("012", "-101", "01", "dosage")),
    ("coding", "coding=", "--coding"),
    ("missing", "missing='drop'", "--drop-unknown"),
    ("refit_variances", "Use refit_variances=True", "Drop --fixed-variances"),
    ("refit_variances", "use refit_variances=True", "drop --fixed-variances"),
    ("refit_variances", "refit_variances=False", "--fixed-variances"),
    ("selfing", "selfing=True", "--selfing"),
    ("selfing", "monoecious=True", "--selfing"),
    (
        "format",
        "pass format='plink', 'vcf' or 'csv'",
        "name it .bed/.bim/.fam (PLINK), .vcf/.vcf.gz/.bcf or .csv/.tsv/.txt",
    ),
)


def option_of(parameter: str | None) -> str | None:
    """The command-line option of a Python-API parameter (None if the CLI has none)."""
    for name, _, cli in OPTIONS:
        if name == parameter:
            return next((w for w in cli.split() if w.startswith("--")), None)
    return None


def cli_words(msg: str, parameter: str | None = None) -> str:
    """Python-API advice (``coding='dosage'``) in command-line terms (``--coding dosage``).

    With ``parameter`` (an error's structured attribute) only that parameter's rows
    apply; without (warnings, errors raised without one), all rows.
    """
    for name, api, cli in OPTIONS:
        if parameter is None or name == parameter:
            msg = msg.replace(api, cli)
    return msg


def describe(exc: BaseException) -> tuple[str, int]:
    """(message, exit code) for an exception raised by a command."""
    if isinstance(exc, CLIError):
        return _first_line(exc), USER_ERROR
    if isinstance(exc, HendersonError):
        return cli_words(_first_line(exc), exc.parameter), USER_ERROR
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or _first_line(exc)
        return f"file not found: {name}", USER_ERROR
    if isinstance(exc, IsADirectoryError):
        return f"expected a file, got a directory: {exc.filename}", USER_ERROR
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}", USER_ERROR
    if isinstance(exc, pd.errors.EmptyDataError):
        return f"empty file: {_first_line(exc)}", USER_ERROR
    if isinstance(exc, pd.errors.ParserError):
        return f"cannot parse: {_first_line(exc)}", USER_ERROR
    if isinstance(exc, UnicodeDecodeError):
        return f"not a text file (cannot decode as {exc.encoding}): {_first_line(exc)}", USER_ERROR
    if isinstance(exc, ImportError):
        return _first_line(exc), USER_ERROR
    return (
        f"internal error ({type(exc).__name__}): {_first_line(exc)} "
        "(rerun with --debug for the traceback and please report it)"
    ), INTERNAL_ERROR


def report_exception(exc: BaseException, debug: bool) -> int:
    """Print the error (and the traceback with ``debug``) to stderr; return the exit code."""
    msg, code = describe(exc)
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"henderson: error: {msg}", file=sys.stderr)
    return code
