"""Download the wheels the GPU run needs (CPython 3.12, manylinux x86-64) and check that they travel.

    python benchmarks/gpu_wheels.py                  # -> .gpu_wheels/ (git-ignored); prints sizes, fails if too big
    python benchmarks/gpu_wheels.py --check-only     # only the size check of an existing folder

The lent GPU machine has no network and no snakemake or lm-eval; at most 64 MiB travels per call,
the working tree included. The packages are those of ``benchmarks/gpu_wheels.txt`` (why each, and
why the others are left out, is written there) at the versions of ``requirements/lock-cpu.txt``,
each downloaded alone (``--no-deps``: the list is the closure). ``benchmarks/gpu_run.py --wheels``
installs them on that machine into a temporary folder.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEEL_LIST = REPO / "benchmarks" / "gpu_wheels.txt"
LOCK = REPO / "requirements" / "lock-cpu.txt"
FOLDER = REPO / ".gpu_wheels"
MIB = 2**20
TRAVEL_LIMIT = 64 * MIB  # what one device call carries: working tree + carried paths
HEADROOM = 0.85  # "well under": wheels + working tree at most 85% of the limit (results, a stray file)
# pip matches manylinux tags exactly: every glibc level a wheel of these packages is built for
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64"]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_wheel_list(path: Path = WHEEL_LIST) -> list[str]:
    names = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [name for name in names if name]


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"{path}:{number}: '{line}' is not a 'name==version' pin")
        pins[normalise(name)] = version
    return pins


def pinned(names: list[str], pins: dict[str, str]) -> list[str]:
    missing = [name for name in names if normalise(name) not in pins]
    if missing:
        raise ValueError(f"{WHEEL_LIST.name}: not pinned in {LOCK.name}: {', '.join(missing)}")
    return [f"{name}=={pins[normalise(name)]}" for name in names]


def download(requirements: list[str], folder: Path) -> None:
    """Into a fresh folder that then replaces ``folder``: one version of each package, nothing stale."""
    tmp = Path(tempfile.mkdtemp(prefix=".gpu_wheels.", dir=folder.parent))
    try:
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(tmp),
                        *requirements], check=True)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def working_tree_bytes(repo: Path = REPO) -> int:
    """What a device call sends besides the wheels: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            check=True, capture_output=True).stdout.split(b"\0")
    return sum((repo / name.decode()).stat().st_size for name in listed if name and (repo / name.decode()).is_file())


def check_fits(wheels: int, tree: int, limit: int = TRAVEL_LIMIT, headroom: float = HEADROOM) -> str:
    """A line with the sizes; ValueError if wheels + working tree exceed ``headroom`` x ``limit``."""
    line = (f"wheels {wheels / MIB:.1f} MiB + working tree {tree / MIB:.1f} MiB = {(wheels + tree) / MIB:.1f} MiB "
            f"of the {limit / MIB:.0f} MiB a device call carries (at most {headroom:.0%})")
    if wheels + tree > headroom * limit:
        raise ValueError(f"too big: {line}")
    return line


def wheel_sizes(folder: Path) -> list[tuple[str, int]]:
    return sorted(((f.name, f.stat().st_size) for f in folder.glob("*.whl")), key=lambda item: -item[1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=FOLDER)
    parser.add_argument("--check-only", action="store_true", help="do not download; check the folder's size")
    args = parser.parse_args(argv)
    if not args.check_only:
        download(pinned(read_wheel_list(), read_lock()), args.folder)
    if not args.folder.is_dir():
        raise SystemExit(f"gpu_wheels.py: {args.folder} does not exist: run without --check-only first")
    for name, size in wheel_sizes(args.folder):
        print(f"{size / MIB:7.2f} MiB  {name}")
    try:
        print(check_fits(folder_bytes(args.folder), working_tree_bytes()))
    except ValueError as error:
        raise SystemExit(f"gpu_wheels.py: {error}") from None


if __name__ == "__main__":
    main()
