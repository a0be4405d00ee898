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
    """Run ``main()``; turn expected errors into one clear line on stderr and exit status 1."""
    from imrepro.download import DownloadError
    from imrepro.messages import DataFormatError
    try:
        main()
    except (DataFormatError, DownloadError, ValueError, FileNotFoundError) as err:
        logging.getLogger(Path(sys.argv[0]).stem).error("%s", err)
        sys.exit(1)
