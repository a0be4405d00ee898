"""The downloader against a real HTTP server on 127.0.0.1 serving the shipped files."""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from conftest import SHIPPED
from imrepro.data.download import ChecksumMismatch, DownloadError, fetch, git_blob_sha1, sha256_file

LIMA = SHIPPED["lima"]
LIMA_SHA256 = "c15ce7cacc2696192727351f4392dc059608dc5a96d69bb69f8ca461725c15b1"
LIMA_GIT_SHA1 = "5b795be45f0be8fc9253f34180dd57b3ccadadd0"  # blob id in the authors' repo


class FlakyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the shipped data directory; the first `failures` requests get HTTP `fail_code`."""

    failures = 0
    fail_code = 503
    requests = 0
    truncate = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(LIMA.parent), **kwargs)

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).requests += 1
        if type(self).requests <= type(self).failures:
            if type(self).truncate:  # promise more bytes than sent, then hang up
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                self.wfile.write(b"partial")
                return
            self.send_error(type(self).fail_code)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (FlakyHandler,), {"failures": 0, "requests": 0, "truncate": False})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_checksum_match(server, tmp_path):
    _, base = server
    dest = tmp_path / "raw" / "lima.jsonl"
    assert fetch(f"{base}/{LIMA.name}", dest, LIMA_SHA256, progress=False) == LIMA_SHA256
    assert dest.read_bytes() == LIMA.read_bytes()


def test_git_blob_sha1_pins_github_files(server, tmp_path):
    _, base = server
    dest = tmp_path / "lima.jsonl"
    fetch(f"{base}/{LIMA.name}", dest, git_sha1=LIMA_GIT_SHA1, progress=False)
    assert git_blob_sha1(dest) == LIMA_GIT_SHA1


def test_checksum_mismatch_is_a_clear_error_and_writes_nothing(server, tmp_path):
    _, base = server
    dest = tmp_path / "lima.jsonl"
    dest.write_text("previous good copy")
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatch, match=f"expected {wrong}, got {LIMA_SHA256}"):
        fetch(f"{base}/{LIMA.name}", dest, wrong, progress=False)
    assert dest.read_text() == "previous good copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lima.jsonl"]


@pytest.mark.parametrize("truncate", [False, True])
def test_transient_failures_are_retried(server, tmp_path, truncate):
    handler, base = server
    handler.failures, handler.truncate = 2, truncate
    dest = tmp_path / "lima.jsonl"
    fetch(f"{base}/{LIMA.name}", dest, LIMA_SHA256, retries=3, backoff=0.01, progress=False)
    assert handler.requests == 3
    assert sha256_file(dest) == LIMA_SHA256


def test_gives_up_after_the_retries(server, tmp_path):
    handler, base = server
    handler.failures = 10
    with pytest.raises(DownloadError, match="after 3 attempt"):
        fetch(f"{base}/{LIMA.name}", tmp_path / "x", LIMA_SHA256, retries=2, backoff=0.01, progress=False)
    assert handler.requests == 3
    assert not (tmp_path / "x").exists()


def test_not_found_is_not_retried(server, tmp_path):
    handler, base = server
    with pytest.raises(DownloadError, match="404"):
        fetch(f"{base}/missing.jsonl", tmp_path / "x", None, retries=3, backoff=0.01, progress=False)
    assert handler.requests == 1


def test_local_paths_and_file_urls(tmp_path):
    for location in (str(LIMA), LIMA.as_uri()):
        dest = tmp_path / hashlib.md5(location.encode()).hexdigest()
        assert fetch(location, dest, LIMA_SHA256, progress=False) == LIMA_SHA256
    with pytest.raises(DownloadError, match="no such local file"):
        fetch(str(Path(tmp_path / "absent")), tmp_path / "y", None, progress=False)
