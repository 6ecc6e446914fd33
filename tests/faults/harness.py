"""Fault injection: run a real fab command, break it at a chosen moment, re-run it plainly,
and check that the server converged and told the truth.

Faults:
- kill: fab gets SIGKILL (a closed laptop, a killed terminal): its SSH connection ends.
- cut: the server's network link goes down for CUT_SECONDS, then comes back; fab is left
  alone (a network outage).
- reboot: the server reboots (fab's connection dies with it).

After each: the same command is run again, with no flags, until it succeeds (at most
MAX_RERUNS); then `fab status` must be healthy and name the release the site really
serves, nothing may be half-built, no detached work still running, and no request of the
load (10 clients, all the while) may have failed, except while the fault itself made the
server unreachable (the link down, the reboot) or before a fresh server first served.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sandbox
from tests.conftest import FAB, PROJECT, fab, on
from tests.load import Load

CUT_SECONDS = 10
MAX_RERUNS = 3
POINTS = 12  # moments per command and fault, spread over the command's unbroken duration
REPORT = Path(os.environ.get("FAULTS_REPORT", PROJECT / ".faults" / "results.jsonl"))


def make_app(root, text, requirements_note=""):
    """A copy of hello_world answering TEXT; REQUIREMENTS_NOTE (a comment) makes its
    requirements.txt, and so its virtualenv, new."""
    app = root / text
    shutil.copytree(PROJECT / "hello_world", app, dirs_exist_ok=True)
    code = (app / "app.py").read_text().replace('"Hello world"', repr(text))
    (app / "app.py").write_text(code)
    if requirements_note:
        with open(app / "requirements.txt", "a") as f:
            f.write(f"# {requirements_note}\n")
    return app


def points(duration):
    """POINTS moments spread evenly over DURATION seconds (the middle of each slice)."""
    return [round(duration * (i + 0.5) / POINTS, 2) for i in range(POINTS)]


@dataclass
class Outcome:
    command: str
    fault: str
    at: float
    injected: bool = False  # False: the run had ended before the moment came
    interrupted_exit: int = None  # the broken run's exit code (-9: killed)
    reruns: int = 0  # plain re-runs until one succeeded
    requests: int = 0
    failed: int = 0  # failed requests outside the fault's own window
    status_lied: bool = False  # before the re-run, status said healthy but named another release
    problems: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems


def argv_for(server, args):
    return [FAB, "-S", str(sandbox.STATE / "ssh_config"), "-H", server.name, *args]


def start_fab(server, args, env):
    return subprocess.Popen(argv_for(server, args), cwd=PROJECT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **env}, start_new_session=True)


def timed(server, args, env):
    """Run fab unbroken; return its duration (the span the fault points spread over)."""
    start = time.monotonic()
    fab("-H", server.name, *args, env=env, check=True)
    return time.monotonic() - start


def inject(fault, server, proc, windows):
    """Break the run now; append (start, end) of any span the server was unreachable."""
    if fault == "kill":
        os.killpg(proc.pid, signal.SIGKILL)
    elif fault == "cut":
        start = time.monotonic()
        sandbox.sh("ip", "link", "set", server.link, "down")
        time.sleep(CUT_SECONDS)
        sandbox.sh("ip", "link", "set", server.link, "up")
        windows.append((start, time.monotonic() + 2))
    elif fault == "reboot":
        start = time.monotonic()
        sandbox.reboot_server(server.name)
        windows.append((start, time.monotonic() + 2))
    else:
        raise ValueError(fault)


def served_release_matches(server, status):
    """Whether the release `fab status` names holds the text the site answers with."""
    release = status.get("release")
    body = subprocess.run(["curl", "-sS", "-m", "5", f"http://{server.address}/"],
                          capture_output=True, text=True).stdout.strip()
    if not release or not body:
        return False
    quoted = " ".join(f"-e {shlex.quote(q + body + q)}" for q in ("'", '"'))
    found = on(server, f"grep -cF {quoted} "
                       f"/srv/hello-world/releases/{release}/app.py || true").strip()
    return found not in ("", "0")


def status_of(server):
    proc = fab("-H", server.name, "status", "--json")
    try:
        return json.loads(proc.stdout)[0]
    except (ValueError, IndexError):
        return {"healthy": False, "problems": [proc.stdout.strip() or proc.stderr.strip()]}


# Every release complete (its marker, a complete venv), every venv complete, no detached
# work or candidate still running.
LEFTOVERS = """cd /srv/hello-world 2>/dev/null || exit 0
for r in releases/*; do
  [ -d "$r" ] || continue
  [ -f "$r/.fab-release" ] && [ -f "$r/.venv/.fab-complete" ] || echo "half-built $r"
done
for v in venvs/*; do [ -d "$v" ] && { [ -f "$v/.fab-complete" ] || echo "half-built $v"; }; done
systemctl list-units --no-legend --plain --state=active,activating \
  'fab-hello-world.*' 'hello-world-candidate-*' | cut -d' ' -f1 | sed 's/^/still running /'
ls /run/fab/fab-hello-world.*.result* 2>/dev/null | sed 's/^/not collected /'
true"""


def run_case(server, command, args, fault, at, env, fresh=False):
    """One case: ARGS (a fab command) broken by FAULT AT seconds in, then re-run plainly.
    FRESH: the server has never served (failures before its first answer do not count)."""
    out = Outcome(command, fault, at)
    windows = []
    with Load(server.address, clients=10, max_seconds=900, max_requests=50000,
              pause_after_error=0.05) as load:
        time.sleep(0.3)
        proc = start_fab(server, args, env)
        try:
            proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            inject(fault, server, proc, windows)
            out.injected = True
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.problems.append("the broken run hung for 10 minutes")
        out.interrupted_exit = proc.returncode
        before = status_of(server)
        if before.get("healthy") and not served_release_matches(server, before):
            out.status_lied = True
            out.problems.append(f"status said healthy with release {before.get('release')}, "
                                "but the site served another")
        for attempt in range(1, MAX_RERUNS + 1):
            rerun = fab("-H", server.name, *args, env=env)
            out.reruns = attempt
            if rerun.returncode == 0:
                break
        else:
            out.problems.append(f"no convergence after {MAX_RERUNS} re-runs:\n{rerun.stdout}")
        time.sleep(0.5)
    after = status_of(server)
    if not after.get("healthy"):
        out.problems.append(f"status unhealthy after the re-run: {after.get('problems')}")
    elif not served_release_matches(server, after):
        out.problems.append("status names a release other than the one the site serves")
    leftovers = on(server, LEFTOVERS).strip()
    if leftovers:
        out.problems.append(leftovers)
    out.requests = load.total
    counted = [answer for began, ended, answer in load.errors
               if not any(began <= end and ended >= start for start, end in windows)
               and not (fresh and (load.first_ok is None or began < load.first_ok))]
    out.failed = len(counted)
    if counted:
        out.problems.append(f"{len(counted)} requests failed: {sorted(set(counted))}")
    record(out)
    return out


def record(out):
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with _report_lock, open(REPORT, "a") as f:
        f.write(json.dumps({**asdict(out), "ok": out.ok}) + "\n")


_report_lock = threading.Lock()


def table(path=REPORT):
    """The README's table: per command and fault, cases, re-runs and requests failed."""
    rows = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        rows.setdefault((r["command"], r["fault"]), []).append(r)
    out = ["| command | fault | cases | converged | re-runs needed | status lied | "
           "requests | failed |", "|---|---|---|---|---|---|---|---|"]
    for (command, fault), cases in sorted(rows.items()):
        reruns = sorted({c["reruns"] for c in cases})
        out.append(f"| {command} | {fault} | {len(cases)} | {sum(c['ok'] for c in cases)} | "
                   f"{', '.join(map(str, reruns))} | {sum(c['status_lied'] for c in cases)} | "
                   f"{sum(c['requests'] for c in cases)} | {sum(c['failed'] for c in cases)} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table())
