"""Fetch a pinned source file: HTTP(S) with retries and back-off, or a local file, checked by sha256.

The bytes stream into a temporary file next to the destination and are renamed into
place only after the checksum matched, so an interrupted or corrupted download never
leaves a file that a later rule would trust.

Hugging Face gated datasets (e.g. LIMA) need a token: it is read from the environment
(``HF_TOKEN``), never from the config.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from imrepro.core.atomic import atomic_path
from imrepro.core.errors import InputError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(InputError, RuntimeError):
    """A source could not be fetched, or its bytes are not the pinned ones."""


class ChecksumMismatch(DownloadError):
    pass


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _request(url: str) -> urllib.request.Request:
    headers = {"User-Agent": "imrepro-downloader/1"}
    token = os.environ.get("HF_TOKEN")
    if token and urlparse(url).hostname in {"huggingface.co", "hf.co"}:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(url, headers=headers)


def _stream(url: str, dest: Path, timeout: float, progress: bool) -> None:
    with urllib.request.urlopen(_request(url), timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            open(dest, "wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=Path(urlparse(url).path).name,
                 disable=not progress, mininterval=1.0) as bar,
        ):
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
        if total is not None and dest.stat().st_size != total:
            raise DownloadError(f"{url}: connection closed after {dest.stat().st_size} of {total} bytes")


def _is_retryable(err: Exception) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code in RETRYABLE_HTTP
    return isinstance(err, urllib.error.URLError | TimeoutError | ConnectionError | DownloadError)


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git blob id of a file: what a GitHub tree lists, so raw GitHub files can be pinned by it."""
    size = os.path.getsize(path)
    digest = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    git_sha1: str | None = None,
    retries: int = 4,
    backoff: float = 2.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> str:
    """Fetch ``url`` (http, https, file URL or a plain local path) to ``dest``; return its sha256.

    The bytes must match ``sha256`` and/or ``git_sha1`` (the git blob id, for GitHub files whose
    sha256 nobody published); a mismatch raises :class:`ChecksumMismatch` and leaves ``dest``
    untouched. With neither given any content is accepted (the caller records the digest).
    Transient failures (connection errors, timeouts, HTTP 408/429/5xx) are retried
    ``retries`` times with exponential back-off; other HTTP errors fail at once.
    """
    dest = Path(dest)
    scheme = urlparse(url).scheme
    with atomic_path(dest) as tmp:
        if scheme in ("http", "https"):
            for attempt in range(retries + 1):
                try:
                    _stream(url, tmp, timeout, progress)
                    break
                except Exception as err:  # noqa: BLE001 - classified just below
                    if not _is_retryable(err) or attempt == retries:
                        raise DownloadError(f"{url}: {err} (after {attempt + 1} attempt(s))") from err
                    wait = backoff * 2**attempt
                    log.warning("%s: %s; retrying in %.1f s (%d/%d)", url, err, wait, attempt + 1, retries)
                    time.sleep(wait)
        else:
            source = Path(urlparse(url).path if scheme == "file" else url)
            if not source.is_file():
                raise DownloadError(f"{url}: no such local file")
            shutil.copyfile(source, tmp)
        digest = sha256_file(tmp)
        for kind, expected, observed in (("sha256", sha256, lambda: digest),
                                         ("git blob sha1", git_sha1, lambda: git_blob_sha1(tmp))):
            if expected is not None and (got := observed()) != expected.lower():
                raise ChecksumMismatch(
                    f"{url}: {kind} mismatch: expected {expected.lower()}, got {got}; "
                    f"{dest} was not written"
                )
    return digest
