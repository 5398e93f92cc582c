"""Turn exceptions into one readable line and an exit code.

User errors (bad files, bad ids, impossible models) exit with 2 and print one line
naming the file/line/column/id; anything else is an internal error (exit 1). The
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import re
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


#: Python-API advice in library messages → the command-line option that does it
#: (regular expressions, applied in order, to errors and warnings alike).
_CLI_WORDS = (
    (r"\bcoding\s*=\s*['\"]([^'\"]+)['\"]", r"--coding \1"),
    (r"\bcoding\s*=(?=\s|$|[),.;])", "--coding"),
    (r"\bmissing\s*=\s*['\"]drop['\"]", "--drop-unknown"),
    (r"\b[Uu]se refit_variances\s*=\s*True", "Drop --fixed-variances"),
    (r"\brefit_variances\s*=\s*False", "--fixed-variances"),
    (r"\b(?:selfing|monoecious)\s*=\s*True", "--selfing"),
    (r"\bpass format='plink', 'vcf' or 'csv'", "name it .bed/.bim/.fam (PLINK), .vcf/.vcf.gz/.bcf or .csv/.tsv/.txt"),
)


def cli_words(msg: str) -> str:
    """Rewrite Python-API advice (``coding='dosage'``) as command-line options (``--coding dosage``)."""
    for pattern, repl in _CLI_WORDS:
        msg = re.sub(pattern, repl, msg)
    return msg


def describe(exc: BaseException) -> tuple[str, int]:
    """(message, exit code) for an exception raised by a command."""
    if isinstance(exc, (CLIError, HendersonError)):
        return cli_words(_first_line(exc)), USER_ERROR
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
    if isinstance(exc, (ValueError, KeyError)) and getattr(exc, "_henderson_user", False):
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
