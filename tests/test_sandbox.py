"""The sandbox runs the 164 canonical HumanEval solutions and contains hostile programs.

Skipped where no isolation method works (then run_program refuses to run, see test_fail_closed).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from imrepro.eval import humaneval, sandbox

REPO = Path(__file__).resolve().parents[1]
ISOLATION = sandbox.detect_isolation()
needs_isolation = pytest.mark.skipif(not ISOLATION.active, reason=f"no sandbox isolation here: {ISOLATION.reason}")


def run(source: str, timeout: float = 3.0) -> sandbox.SandboxResult:
    return sandbox.run_program(source, timeout=timeout)


def assert_host_unharmed(result: sandbox.SandboxResult) -> None:
    if result.uid is not None:  # root mode: nothing of the run's private uid may survive
        assert sandbox.processes_of_uid(result.uid) == []
    pid = os.fork()  # the test process can still fork
    if pid == 0:
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0


@needs_isolation
def test_isolation_is_recorded():
    result = run("print('hello')")
    assert result.passed and result.status == sandbox.PASSED
    assert result.stdout_tail.strip() == "hello"
    assert result.network_isolated and result.filesystem_isolated
    assert result.isolation == ISOLATION.mode


@needs_isolation
def test_canonical_solutions_pass():
    problems = humaneval.load_problems()
    assert len(problems) == 164
    samples = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    started = time.monotonic()
    score = humaneval.score_samples(samples, problems, workers=2, truncate=False)
    assert score.statuses == {sandbox.PASSED: 164}, [s for s in score.samples if not s["passed"]][:5]
    assert score.pass_at_k == {"pass@1": 1.0}
    assert time.monotonic() - started < 60


@needs_isolation
def test_infinite_loop_times_out():
    started = time.monotonic()
    result = run("while True:\n    pass\n", timeout=1.0)
    assert result.status == sandbox.TIMEOUT and not result.passed
    assert time.monotonic() - started < 5
    assert_host_unharmed(result)


@needs_isolation
def test_fork_bomb_is_contained():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run(bomb, timeout=1.5)
    assert not result.passed and result.status in (sandbox.TIMEOUT, sandbox.FAILED)
    assert_host_unharmed(result)


@needs_isolation
def test_daemonised_child_does_not_outlive_the_run():
    escape = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
              "        time.sleep(60)\n")
    result = run(escape)
    assert_host_unharmed(result)


@needs_isolation
def test_process_limit():
    counter = ("import os, time\nn = 0\ntry:\n    while n < 100:\n        if os.fork() == 0:\n"
               "            time.sleep(3)\n            os._exit(0)\n        n += 1\n"
               "except OSError:\n    pass\nprint(n)\n")
    result = run(counter)
    assert result.passed
    assert int(result.stdout_tail) < sandbox.Limits().max_processes
    assert_host_unharmed(result)


@needs_isolation
def test_memory_hog_fails():
    result = run("x = bytearray(10 * 2**30)\nprint(len(x))\n")
    assert result.status == sandbox.FAILED
    assert "MemoryError" in result.stderr_tail
    assert_host_unharmed(result)


@needs_isolation
def test_writes_outside_the_working_directory_fail():
    name = f"imrepro-escape-{secrets.token_hex(8)}"
    targets = [Path(tempfile.gettempdir()) / name, REPO / name, Path.home() / name, Path("/") / name]
    for target in targets:
        result = run(f"open({str(target)!r}, 'w').write('pwned')\n")
        assert result.status == sandbox.FAILED, target
        assert not target.exists(), target
    inside = run("open('scratch.txt', 'w').write('fine')\nimport os\nos.mkdir('d')\nprint(os.getcwd())\n")
    assert inside.passed  # the working directory itself is writable ...
    assert not Path(inside.stdout_tail.strip()).exists()  # ... and thrown away afterwards


@needs_isolation
def test_file_size_limit():
    result = run("open('big', 'wb').write(b'x' * (64 << 20))\n")
    assert result.status == sandbox.FAILED


@needs_isolation
def test_network_connection_fails():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
        assert result.status == sandbox.FAILED
        assert "unreachable" in result.stderr_tail
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


@needs_isolation
def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("HF_TOKEN", "hf_test_secret")
    result = run("import os\nassert not any('KEY' in k or 'TOKEN' in k for k in os.environ), dict(os.environ)\n"
                 "print(sorted(os.environ))\n")
    assert result.passed, result.stderr_tail
    assert "secret" not in result.stdout_tail


@needs_isolation
def test_program_cannot_forge_the_verdict():
    forged = '{"timeout": false, "duration_s": 0.0, "returncode": 0, "signal": null, "stdout": "", "stderr": ""}'
    result = run(f"print({forged!r})\nimport sys\nsys.stderr.write({forged!r})\nraise SystemExit(1)\n")
    assert result.status == sandbox.FAILED and result.returncode == 1


def test_fail_closed_without_isolation():
    none = sandbox.Isolation("none", False, False, False, ISOLATION.python, "simulated")
    with pytest.raises(sandbox.SandboxUnavailable):
        sandbox.run_program("print(1)", isolation=none)
    result = sandbox.run_program("print(1)", isolation=none, allow_unisolated=True)
    assert result.passed and result.isolation == "none"
    assert not result.network_isolated and not result.filesystem_isolated


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_unprivileged_user_namespace_mode():
    """As a normal user the sandbox uses a user namespace; try it as `nobody` with the system python."""
    python = "/usr/bin/python3"
    if not os.path.exists(python) or not sandbox._world_executable(python):
        pytest.skip("no world-executable system python")
    script = (
        "import os, sys\nsys.path.insert(0, sys.argv[1])\nfrom imrepro.eval import sandbox\n"
        "iso = sandbox.detect_isolation()\nprint(iso.mode)\n"
        "r = sandbox.run_program('import socket\\nsocket.create_connection((\"127.0.0.1\", 9), timeout=1)')\n"
        "assert r.status == 'failed' and 'unreachable' in r.stderr_tail, r\n"
        "r = sandbox.run_program('open(\"/tmp/imrepro-userns-escape\", \"w\")')\n"
        "assert r.status == 'failed' and not os.path.exists('/tmp/imrepro-userns-escape'), r\n"
        "r = sandbox.run_program('print(open(\"/proc/self/status\").read())')\n"
        "assert 'CapEff:\\t0000000000000000' in r.stdout_tail, r.stdout_tail\n"
        "print('ok')\n"
    )
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", script,
                           str(REPO / "src")], capture_output=True, text=True, timeout=120, cwd="/")
    if "Permission denied" in proc.stderr:
        pytest.skip("the repository is not readable by nobody")
    if proc.stdout.startswith("none"):
        pytest.skip("unprivileged user namespaces are not available here")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["userns", "ok"]
