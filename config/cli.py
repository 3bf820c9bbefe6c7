"""The error boundary every command line shares.

A mistake a user can fix (a bad configuration value or flag, a missing input, jars not yet
fetched) ends the program with one line on stderr that names what to change, and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from config.errors import ConfigError, UserError
from config.settings import Settings, load_settings


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


def settings_with_flags(values: Mapping[str, Any], flags: Mapping[str, str]) -> Settings:
    """Load the settings with command-line values laid over the files, validated by the same
    rules as the configuration; an error names the flag, not the variable.

    Args:
        values: flag destination -> value (``None``: not given, the file's value stands).
        flags: flag destination -> the ``QL_*`` override it sets, e.g.
            ``{"initial_capital": "QL_TRADING__INITIAL_CAPITAL"}``.

    Raises:
        ConfigError: a value breaks a rule; the message names the flag and the rule.
    """
    given = {var: str(values[dest]) for dest, var in flags.items() if values.get(dest) is not None}
    try:
        return load_settings(env={**os.environ, **given})
    except ConfigError as exc:
        message = str(exc)
        for dest, var in flags.items():
            message = message.replace(f"(from ${var})", f"(from --{dest.replace('_', '-')})")
        raise ConfigError(message) from None
