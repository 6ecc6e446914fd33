"""What the bench's parts share: where things are, the default settings, timing a command."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import sandbox  # noqa: E402
from tasks.config import finish  # noqa: E402
from tasks.fields import DEFAULTS  # noqa: E402
from tasks.settings import Settings  # noqa: E402

FAB = str(PROJECT / ".venv/bin/fab")


PEERS = PROJECT / "bench/peers"


PEER_BIN = PROJECT / "bench/.peers/bin"


APP = PROJECT / "hello_world"


DEFAULT_SETTINGS = Settings(**finish(dict(DEFAULTS)))  # hello_world's, as the floors use them


def timed(argv, cwd=PROJECT, env=None):
    """Run ARGV; return (seconds, completed process); stop the bench if it failed."""
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(map(str, argv))} failed:\n{proc.stdout}\n"
                         f"{proc.stderr}")
    return elapsed, proc


def fab(*args, env=None, trace=False):
    """Run fab (TRACE: with each round trip timed, bench/trace.py); return (seconds,
    completed process)."""
    program = [str(PROJECT / ".venv/bin/python"), str(PROJECT / "bench/trace.py")] \
        if trace else [FAB]
    return timed([*program, "-S", str(sandbox.STATE / "ssh_config"), *args], env=env)


# Runs a command and prints the peak resident memory of it and its children, in KB.
PEAK_RSS = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
            "print('peak-rss-kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "file=sys.stderr); sys.exit(rc)")


def fab_with_peak_rss(*args, env=None):
    """fab, through PEAK_RSS; (seconds, process, peak RSS in MB)."""
    elapsed, proc = timed([sys.executable, "-c", PEAK_RSS, FAB, "-S",
                           str(sandbox.STATE / "ssh_config"), *args], env=env)
    return elapsed, proc, int(re.search(r"peak-rss-kb (\d+)", proc.stderr).group(1)) / 1024


def requirements():
    return " ".join(line.split("#")[0].strip()
                    for line in (APP / "requirements.txt").read_text().splitlines()
                    if line.split("#")[0].strip())
