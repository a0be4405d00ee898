"""Download one pinned source file (or copy its shipped twin), verified by checksum.

    python workflow_scripts/download_source.py --url URL --sha256 HEX --dest results/data/raw/im_lima/lima_data.jsonl
    python workflow_scripts/download_source.py --url URL --sha256 HEX \
        --shipped resources/data/lima_data.jsonl --dest results/data/raw/im_lima/lima_data.jsonl

A source with neither --sha256 nor --git-sha1 is pinned on first use: the observed sha256 is
written to ``<dest dir>/SHA256SUM`` and every later download must match it.
"""

import argparse
import logging
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.data.download import fetch

log = logging.getLogger("download_source")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--dest", required=True, type=Path)
    parser.add_argument("--sha256")
    parser.add_argument("--git-sha1")
    parser.add_argument("--shipped", help="repository copy with the same bytes; used instead of the URL")
    parser.add_argument("--retries", type=int, default=4)
    parser.add_argument("--backoff", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    lock = args.dest.parent / "SHA256SUM"
    sha256 = args.sha256
    if sha256 is None and args.git_sha1 is None and lock.exists():
        sha256 = lock.read_text().split()[0]
        log.info("unpinned source: using the sha256 recorded at first download (%s)", lock)
    location = args.shipped or args.url
    log.info("fetching %s -> %s", location, args.dest)
    digest = fetch(location, args.dest, sha256, git_sha1=args.git_sha1, retries=args.retries,
                   backoff=args.backoff, timeout=args.timeout)
    if sha256 is None and args.git_sha1 is None:
        log.warning("%s has no pinned checksum; recording sha256 %s in %s", args.url, digest, lock)
        with atomic_open(lock) as out:
            out.write(f"{digest}  {args.dest.name}\n")
    log.info("ok: %s sha256=%s", args.dest, digest)


if __name__ == "__main__":
    run_main(main)
