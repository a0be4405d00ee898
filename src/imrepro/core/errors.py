"""The one exception base the CLI programs treat as the user's to fix (see :func:`imrepro.core.cli.run_main`).

A stage's own input errors (a malformed data file, a download whose bytes are not the pinned ones) derive
from :class:`InputError` as well as from their usual built-in class, so that ``core`` need not import the
stages to recognise them.
"""


class InputError(Exception):
    """Something the user gave is wrong (a file, a download, a value); its message says what and where."""
