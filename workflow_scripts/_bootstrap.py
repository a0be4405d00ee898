"""Make ``src/`` importable and set up logging for the workflow's CLI programs.

Imported first by every script here, so the scripts run the repository's library whether
or not it was pip-installed into the environment Snakemake gives the job (venv or conda).
"""

import logging
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                    stream=sys.stderr)


def run_main(main) -> None:
    """Run ``main()``; turn bad-input errors into one clear line on stderr and exit status 1.

    Data, download and missing-file errors, and the ValueErrors our own code raises, are the
    user's to fix: the message says what and where. A ValueError raised inside a library
    (torch, transformers, ...) may be a bug, so its traceback follows the message.
    """
    from imrepro.data.download import DownloadError
    from imrepro.data.messages import DataFormatError
    log = logging.getLogger(Path(sys.argv[0]).stem)
    try:
        main()
    except (DataFormatError, DownloadError, FileNotFoundError) as err:
        log.error("%s", err)
        sys.exit(1)
    except ValueError as err:
        log.error("%s", err)
        if not _raised_by_us(err):
            log.error("raised inside a library:", exc_info=True)
        sys.exit(1)


def _raised_by_us(err: BaseException) -> bool:
    frame = err.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    path = Path(frame.tb_frame.f_code.co_filename).resolve()
    return path.is_relative_to(SRC) or path.is_relative_to(Path(__file__).resolve().parent)
