"""The error boundary every command line shares.

A mistake a user can fix (a bad configuration value or flag, a missing input, jars not yet
fetched) ends the program with one line on stderr that names what to change, and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix; the message says what and how."""


def guarded(main: Callable[[], int], fixable: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``main`` and turn user-fixable errors into one ``error: ...`` line and exit code 2.

    Args:
        main: the command's body, returning its exit code.
        fixable: further exception types to report the same way (``ValueError`` from domain
            code that validates its inputs, a client library's "not found", ...).
    """
    try:
        return main()
    except (UserError, *fixable) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
