"""Fixtures: fresh sandbox servers that are always torn down, and a `fab` runner."""

import contextlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import sandbox  # noqa: E402

FAB = str(PROJECT / ".venv/bin/fab")
_names = itertools.count(1)
_booted = set()


def pytest_collection_modifyitems(items):
    """Tests marked `last` (they tear the whole sandbox down) run after all others."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def pytest_configure(config):
    config.addinivalue_line("markers", "last: run after every other test")
    config.addinivalue_line("markers", "slow: long proofs kept out of `make test` for its time "
                                       "budget; `make test-slow` runs them (CI runs both)")
    config.addinivalue_line("markers", "faults: the fault-injection matrix (`make faults`)")


def boot(sudo_password=None, suite=sandbox.DEFAULT_SUITE):
    name = f"t{os.getpid() % 100000}-{next(_names)}"
    _booted.add(name)
    return sandbox.boot(name, sudo_password, suite)


def destroy(server):
    sandbox.destroy(server.name)
    _booted.discard(server.name)


@contextlib.contextmanager
def booted(**kwargs):
    """A fresh server for a with-block, destroyed after it whatever happened."""
    s = boot(**kwargs)
    try:
        yield s
    finally:
        destroy(s)


def pytest_sessionfinish(session):
    for name in list(_booted):  # whatever a crashed or interrupted test left
        sandbox.destroy(name)


@pytest.fixture
def server():
    """A fresh server for this test only."""
    with booted() as s:
        yield s


@pytest.fixture
def make_server():
    """Boot as many fresh servers as a test asks for; all go away after it."""
    made = []

    def make(**kwargs):
        made.append(boot(**kwargs))
        return made[-1]
    try:
        yield make
    finally:
        for s in made:
            destroy(s)


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """One fresh server for a module's tests (which run in order), and a folder for the apps
    they deploy to it: (server, folder)."""
    with booted() as s:
        yield s, tmp_path_factory.mktemp("apps")


@pytest.fixture(scope="session")
def session_server():
    """One fresh server shared by a whole session (for tests that only read)."""
    with booted() as s:
        yield s


def fab(*args, cwd=PROJECT, env=None, timeout=600, check=None):
    """Run the real `fab` command with the sandbox's ssh_config; return the process."""
    argv = [FAB, "-S", str(sandbox.STATE / "ssh_config"), *args]
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    if check is not None and (proc.returncode == 0) != check:
        raise AssertionError(f"fab {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def on(server, command, user="root", check=True, timeout=60):
    """Run a shell command on a sandbox server over plain ssh; return stdout."""
    return sandbox.ssh(server, command, user=user, check=check, timeout=timeout).stdout


def infra(server):
    """A pytest-testinfra host for asserting server state, as root over ssh."""
    import testinfra
    return testinfra.get_host(f"ssh://root@{server.name}",
                              ssh_config=str(sandbox.STATE / "ssh_config"))


def http_get(server, path="/", port=80, timeout=20):
    """GET http://<server><path> from this machine; (status, headers, body) or raise."""
    # 20 s: a request that writes (SQLite's fsync) took over 5 s on a loaded 2-core CI run
    import urllib.request
    with urllib.request.urlopen(f"http://{server.address}:{port}{path}", timeout=timeout) as r:
        return r.status, dict(r.headers), r.read().decode()


def recap(proc, host):
    """The recap line of HOST in a fab run's output, without the padding."""
    for line in proc.stdout.split("recap:")[-1].splitlines():
        parts = line.split(None, 1)
        if parts and parts[0] == host:
            return parts[1].split("  (")[0].strip()
    raise AssertionError(f"no recap line for {host} in:\n{proc.stdout}")
