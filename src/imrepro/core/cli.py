"""Logging and error handling shared by the workflow's CLI programs (``workflow_scripts/``).

Every script ends with ``run_main(main)``::

    from imrepro.core.cli import run_main
    ...
    if __name__ == "__main__":
        run_main(main)

The package is installed in every environment that runs a script (``pip install -e .`` in the
Makefile's venv, ``-e ..`` in ``envs/*.yaml``), so no script edits ``sys.path``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from imrepro.core.errors import InputError

PACKAGE = Path(__file__).resolve().parents[1]  # src/imrepro
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """INFO and above to stderr (the rule's log file), one timestamped line per record."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)


def run_main(main: Callable[[], None]) -> None:
    """Set up logging and run ``main()``; turn bad-input errors into one clear line on stderr and exit 1.

    Input errors (:class:`~imrepro.core.errors.InputError`: data format, download), missing files and the
    ValueErrors our own code raises are the user's to fix: the message says what and where. A ValueError
    raised inside a library (torch, transformers, ...) may be a bug, so its traceback follows the message.
    """
    setup_logging()
    log = logging.getLogger(Path(sys.argv[0]).stem)
    try:
        main()
    except (InputError, FileNotFoundError) as err:
        log.error("%s", err)
        sys.exit(1)
    except ValueError as err:
        log.error("%s", err)
        if not _raised_by_us(err):
            log.error("raised inside a library:", exc_info=True)
        sys.exit(1)


def _raised_by_us(err: BaseException) -> bool:
    """Whether the innermost frame of ``err`` is in this package or in the running script's folder."""
    frame = err.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    path = Path(frame.tb_frame.f_code.co_filename).resolve()
    return path.is_relative_to(PACKAGE) or path.is_relative_to(Path(sys.argv[0]).resolve().parent)
