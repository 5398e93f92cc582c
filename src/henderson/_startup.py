"""Ctrl-C while the ``henderson`` command is still starting up (importing numpy, scipy,
numba...): one line, exit code 130, no traceback.

``henderson/__init__.py`` calls :func:`guard` first thing. Only the ``henderson``
console script is guarded (a Python session that imports henderson keeps Python's
own Ctrl-C); :func:`henderson.cli.main.main` hands Ctrl-C back to Python's
``KeyboardInterrupt`` as soon as it can clean up after itself.
Standard library only: this module runs before anything heavy is imported.
"""

from __future__ import annotations

import os
import signal
import sys

#: Names the console script has (pip's launcher on Windows adds -script.py / .exe).
SCRIPT_NAMES = ("henderson", "henderson.exe", "henderson-script.py")


def _quit(signum, frame):  # pragma: no cover - runs in a subprocess, see tests/cli/test_cli_process.py
    try:
        os.write(2, b"\nhenderson: interrupted\n")
    finally:
        os._exit(130)


def guard() -> None:
    """Make Ctrl-C quit quietly (exit 130) while the command line starts up."""
    if os.path.basename(sys.argv[0] if sys.argv else "") not in SCRIPT_NAMES:
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _quit)
    except ValueError:  # pragma: no cover - not the main thread
        pass


#: Set once Ctrl-C reaches the command after :func:`release`.
_RECEIVED = [False]


def _interrupt(signum, frame):
    """Python's KeyboardInterrupt, remembered: a library that catches the exception
    (pandas' C reader turns an interrupted read into a ParserError) cannot turn
    Ctrl-C into an error report."""
    _RECEIVED[0] = True
    raise KeyboardInterrupt


def interrupt_received() -> bool:
    """True once Ctrl-C has reached the command line after start-up."""
    return _RECEIVED[0]


def release() -> None:
    """Back to a KeyboardInterrupt on Ctrl-C (called by ``main`` once it can clean up)."""
    try:
        if signal.getsignal(signal.SIGINT) is _quit:
            signal.signal(signal.SIGINT, _interrupt)
    except ValueError:  # pragma: no cover
        pass
