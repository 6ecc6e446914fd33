"""Benchmarks: whole commands on fresh sandbox servers, timed from outside, beside the peers.

    make bench     (.venv/bin/python bench/run.py [--rounds 5] [--out bench/RESULTS.md])

The same seed stack is put on fresh servers by `fab provision`, by an Ansible
playbook and by a pyinfra deploy (bench/peers/, installed in bench/.peers by
`make bench`), taking turns round by round so that drift in the machine or the
mirror hits every tool alike. Every figure is the wall time of a whole command
(process start to exit), reported as median, min and max over ROUNDS rounds;
ratios are computed round by round (peer time / our time) and summarised the same
way. Needs root (it boots sandbox servers).
"""

import argparse
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import sandbox  # noqa: E402
from tasks.config import finish  # noqa: E402
from tasks.facts import script  # noqa: E402
from tasks.fields import DEFAULTS  # noqa: E402
from tasks.health import app_socket, probe_command  # noqa: E402
from tasks.settings import Settings  # noqa: E402
from tasks.shell import PYTHON  # noqa: E402
from tasks.steps import needs  # noqa: E402
from tasks.switch import RESTART_NOW, candidate_unit, start_candidate, stop_candidate  # noqa: E402
from tests.load import Load  # noqa: E402

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


def ours(servers, workers=4):
    """`fab provision`; (seconds, steps changed, process)."""
    elapsed, proc = fab("-H", ",".join(s.name for s in servers), "provision",
                        env={"FABRIC_APP_WORKERS": str(workers)})
    return elapsed, sum(map(int, re.findall(r"changed=(\d+)", proc.stdout))), proc


def ansible(servers, workers=4):
    """The Ansible playbook, over OpenSSH with pipelining; (seconds, tasks changed, process)."""
    inventory = sandbox.STATE / "bench-inventory.ini"
    inventory.write_text("".join(f"{s.name}\n" for s in servers))
    ssh_args = (f"-F {sandbox.STATE / 'ssh_config'} -o ControlMaster=auto "
                "-o ControlPersist=60s")  # Ansible's own default, with the sandbox's hosts
    elapsed, proc = timed([PEER_BIN / "ansible-playbook", "-i", inventory, "playbook.yml",
                           "-e", f"app_src={APP}", "-e", f"workers={workers}"],
                          cwd=PEERS / "ansible",
                          env={"ANSIBLE_CONFIG": str(PEERS / "ansible/ansible.cfg"),
                               "ANSIBLE_SSH_ARGS": ssh_args})
    return elapsed, sum(map(int, re.findall(r"changed=(\d+)", proc.stdout))), proc


def pyinfra(servers, workers=4):
    """The pyinfra deploy (paramiko); (seconds, operations that changed something, process)."""
    inventory = sandbox.STATE / "bench_inventory.py"
    hosts = [(s.name, {"ssh_hostname": s.address, "ssh_user": sandbox.USER,
                       "ssh_key": str(sandbox.STATE / "id_ed25519"),
                       "ssh_known_hosts_file": str(sandbox.STATE / "known_hosts"),
                       "ssh_strict_host_key_checking": "no"}) for s in servers]
    inventory.write_text(f"hosts = {hosts!r}\n")
    elapsed, proc = timed([PEER_BIN / "pyinfra", "-y", inventory, "deploy.py"],
                          cwd=PEERS / "pyinfra",
                          env={"APP_SRC": f"{APP}/", "WORKERS": str(workers)})
    total = re.search(r"Grand total\s+\d+\s+(\d+|-)", proc.stdout)
    return elapsed, int(total.group(1)) if total and total.group(1) != "-" else 0, proc


TOOLS = {"fab": ours, "Ansible": ansible, "pyinfra": pyinfra}

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


# The floors: the same work, hand-written, as one OpenSSH command per server (as root
# through sudo), all servers at once. Fresh: apt's lists, the packages, a venv with the app's
# requirements, ufw.
FRESH_FLOOR = f"""set -e
export DEBIAN_FRONTEND=noninteractive
apt-get -q update >/dev/null
apt-get -q -y install python3-venv nginx supervisor ufw >/dev/null
python3 -m venv /srv/floor
/srv/floor/bin/pip install -q {requirements()}
ufw allow OpenSSH >/dev/null && ufw allow http >/dev/null && ufw --force enable >/dev/null
"""

# The same, ending as fab's provision does, with the app serving: hello_world's files,
# gunicorn's four workers under supervisor, nginx's site in front, probed through nginx.
SERVED_FLOOR = FRESH_FLOOR + f"""mkdir -p /srv/floor-app && cat > /srv/floor-app/app.py <<'EOF'
{(APP / "app.py").read_text()}EOF
cat > /etc/supervisor/conf.d/floor.conf <<'EOF'
[program:floor]
command=/srv/floor/bin/gunicorn --workers 4 --bind 127.0.0.1:8000 --chdir /srv/floor-app app:app
user=nobody
EOF
supervisorctl reread >/dev/null && supervisorctl update floor >/dev/null
echo 'server {{ listen 80 default_server; location / {{ proxy_pass http://127.0.0.1:8000; }} }}' \
  > /etc/nginx/sites-available/floor
ln -sf ../sites-available/floor /etc/nginx/sites-enabled/floor
rm -f /etc/nginx/sites-enabled/default && systemctl reload nginx
{probe_command(DEFAULT_SETTINGS, "http://127.0.0.1", 60)} >/dev/null
"""


def fact_script():
    """Converged: one command reading what fab's facts read (tasks/facts.py's script, for
    the default settings)."""
    return script(DEFAULT_SETTINGS, needs(DEFAULT_SETTINGS))


def over_ssh(servers, script):
    """SCRIPT as root on every server at once, one OpenSSH command each; (seconds, None)."""
    start = time.monotonic()
    command = f"sudo sh -c {shlex.quote(script)}"
    procs = [subprocess.Popen([*sandbox.ssh_argv(s, sandbox.USER), command],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in servers]
    results = [(p, *p.communicate(timeout=1800)) for p in procs]
    elapsed = time.monotonic() - start
    for p, out, err in results:
        if p.returncode != 0:
            raise SystemExit(f"bench: a floor script failed:\n{out}\n{err}")
    return elapsed, None


def floor(servers):
    return over_ssh(servers, FRESH_FLOOR)


def served_floor(servers):
    return over_ssh(servers, SERVED_FLOOR)


# A code-only deploy's floor: the app's files (a tarball on stdin) unpacked into a new
# release beside the live one (named and marked as fab names and marks its own, so the next
# fab deploy sees a complete live release), its venv linked, `current` switched, gunicorn
# restarted the quickest way there is (fab's own: over supervisord's socket, no startsecs)
# and probed until it answers (fab's own probe): a deploy is done when the app serves.
DEPLOY_FLOOR = f"""set -e
cd /srv/hello-world
rid=$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \\n')
mkdir releases/$rid && tar -xzf - -C releases/$rid
ln -s "$(readlink current/.venv)" releases/$rid/.venv && echo floor > releases/$rid/.fab-release
@covered@ln -sfn releases/$rid current.floor && mv -Tf current.floor current
{PYTHON} -c {shlex.quote(RESTART_NOW)} hello-world
{probe_command(DEFAULT_SETTINGS, app_socket(DEFAULT_SETTINGS.socket), 60)} >/dev/null
@stopped@"""

# The same, with what makes fab's deploys fail no request: fab's candidate of the new
# release (by a fixed link, as fab's scripts quote the path they are given), started with
# four workers and probed before the switch, covering the restart, stopped (not waited
# for) after it.
FLOOR_RELEASE = "/srv/hello-world/floor-release"


def covered(unit):
    """The lines DEPLOY_FLOOR's @covered@ and @stopped@ stand for, for a candidate UNIT."""
    return {"@covered@": f"ln -sfn releases/$rid {FLOOR_RELEASE}\n"
                         + start_candidate(DEFAULT_SETTINGS, unit, FLOOR_RELEASE, 4) + "\n"
                         + probe_command(DEFAULT_SETTINGS,
                                         app_socket(DEFAULT_SETTINGS.candidate_socket), 60)
                         + " >/dev/null\n",
            "@stopped@": stop_candidate(unit, wait=False)
                         + f"\nrm -f {FLOOR_RELEASE}\n"}


# fab's builds use no pip cache (the build account keeps nothing between builds): nor does this.
PIP_FLOOR = ("rm -rf /tmp/pip-floor && python3 -m venv /tmp/pip-floor && PIP_NO_CACHE_DIR=1 "
             "/tmp/pip-floor/bin/pip install -q {requirements} 'itsdangerous==2.2.0' && "
             "rm -rf /tmp/pip-floor  # round {n}")


def deploy_floor(server, app, covered_by_candidate=False):
    """DEPLOY_FLOOR of APP's files on SERVER (COVERED_BY_CANDIDATE: fab's), one OpenSSH
    command; (seconds, None)."""
    script = DEPLOY_FLOOR
    for marker, lines in covered(candidate_unit(DEFAULT_SETTINGS)).items():
        script = script.replace(marker, lines if covered_by_candidate else "")
    start = time.monotonic()
    tar = subprocess.run(["tar", "-czf", "-", "-C", str(app), "."], capture_output=True,
                         check=True).stdout
    proc = subprocess.run([*sandbox.ssh_argv(server, sandbox.USER),
                           f"sudo sh -c {shlex.quote(script)}"], input=tar,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench: the deploy floor failed: {proc.stderr.decode()}")
    return time.monotonic() - start, None


STEP_LINE = re.compile(r"^\[[^\]]+\] (\w+) +(?:ok|changed|failed) .*?(?:\((\d+\.\d) s\))?$", re.M)


def where_time_goes(elapsed, proc):
    """{part: seconds} of one fab run on one host: Python's start and imports (the whole
    command's time less the run's own, from the recap), each step (from its line; under
    0.1 s it shows none), and the rest of the run: the SSH connection, the lock, facts and
    log's round trips, and the facts read again after a change."""
    took = recaps(proc)[0][1]
    parts = {"Python start": elapsed - took}
    for step, seconds in STEP_LINE.findall(proc.stdout):
        parts[step] = parts.get(step, 0) + float(seconds or 0)
    parts["connect, lock, facts, log"] = took - sum(list(parts.values())[1:])
    return parts


def breakdown(runs):
    """The median of each part over RUNS [(elapsed, proc)], in the order they ran."""
    parts = [where_time_goes(*run) for run in runs]
    medians = {k: statistics.median(p.get(k, 0) for p in parts) for k in parts[0]}
    return ", ".join(f"{k} {v:.2f} s" for k, v in medians.items() if v >= 0.005) + \
        f"; {statistics.median(recaps(proc)[0][0] for _, proc in runs):.0f} SSH round trips"


def round_trips(runs):
    """The median time of each kind of round trip over RUNS [(elapsed, traced process)],
    in the order they ran, and the median count of each."""
    traced = [re.findall(r"^@trace ([\d.]+) (.*)$", proc.stderr, re.M) for _, proc in runs]
    kinds = list(dict.fromkeys(kind for run in traced for _, kind in run))
    parts = []
    for kind in kinds:
        times = [sum(float(t) for t, k in run if k == kind) for run in traced]
        count = statistics.median(sum(k == kind for _, k in run) for run in traced)
        parts.append(f"{kind} {statistics.median(times):.2f} s"
                     + (f" ({count:.0f} round trips)" if count > 1 else ""))
    return ", ".join(parts)


def recaps(proc):
    """[(SSH round trips, seconds)] of each host's recap line in a fab run's output."""
    return [(int(n), float(s)) for n, s in
            re.findall(r"\((\d+) SSH round trips?, ([\d.]+) s\)", proc.stdout)]


def summary(values, unit="s"):
    return (f"{statistics.median(values):.2f} {unit} (min {min(values):.2f}, "
            f"max {max(values):.2f}, n={len(values)})")


def short(values, unit=" s"):
    """median (min-max)"""
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def ratios(peer, mine):
    """Peer time / our time, round by round: how many times faster we are."""
    return short([p / m for p, m in zip(peer, mine, strict=True)], unit="x")


class Bench:
    def __init__(self, rounds):
        self.rounds = rounds
        self.rows = []  # (what, summary text)
        self.peer_rows = []  # (what, {tool: [seconds per round]}, extra text)
        self.names = iter(f"bench-{i}" for i in range(1, 1000))

    def server(self):
        return sandbox.boot(next(self.names))

    def record(self, what, text):
        print(f"{what}: {text}", flush=True)
        self.rows.append((what, text))

    def compare(self, what, times, note=""):
        self.peer_rows.append((what, times, note))
        print(f"{what}: " + ", ".join(f"{t} {short(v)}" for t, v in times.items()), flush=True)

    def peers_one_server(self):
        """Fresh, converged and one-line-change runs, tools taking turns on fresh servers."""
        fresh, converged, workers = ({t: [] for t in TOOLS} for _ in range(3))
        changed, trips = {t: set() for t in TOOLS}, []
        for _ in range(self.rounds):
            for name, tool in TOOLS.items():
                s = self.server()
                fresh[name].append(tool([s])[0])
                elapsed, count, proc = tool([s])
                converged[name].append(elapsed)
                changed[name].add(count)
                trips += [n for n, _ in recaps(proc)] if name == "fab" else []
                workers[name].append(tool([s], workers=3)[0])
                sandbox.destroy(s.name)
        self.compare("fresh provision, 1 server", fresh)
        self.compare("converged re-run, 1 server", converged,
                     "changed reported: " + ", ".join(f"{t} {sorted(c)}"
                                                      for t, c in changed.items()))
        self.compare("one-line change (workers 4->3) re-run", workers)
        self.record("SSH round trips of fab's converged re-run", f"{statistics.median(trips):.0f}")

    def peers_three_servers(self):
        """Each tool provisions its own 3 servers, then converged runs take turns."""
        fleets = {t: [self.server() for _ in range(3)] for t in TOOLS}
        fresh = {t: [tool(fleets[t])[0]] for t, tool in TOOLS.items()}
        three, one = ({t: [] for t in TOOLS} for _ in range(2))
        for _ in range(self.rounds):
            for name, tool in TOOLS.items():
                three[name].append(tool(fleets[name])[0])
                one[name].append(tool(fleets[name][:1])[0])
        for fleet in fleets.values():
            for s in fleet:
                sandbox.destroy(s.name)
        self.compare("fresh provision, 3 servers at once", fresh)
        self.compare("converged re-run, 3 servers", three, "3 servers / 1 server: " + ", ".join(
            f"{t} {ratios(three[t], one[t])}" for t in TOOLS))

    def converged(self):
        """The converged re-run on one server beside its floor (one OpenSSH command reading
        the same facts), taking turns in each round, and fab's SSH round trips."""
        s = self.server()
        fab("-H", s.name, "provision")
        runs, floors = [], []
        for _ in range(self.rounds):
            elapsed, _, proc = ours([s])
            runs.append((elapsed, proc))
            floors.append(over_ssh([s], fact_script())[0])
        sandbox.destroy(s.name)
        times = [elapsed for elapsed, _ in runs]
        self.record("converged re-run, 1 server, beside its floor",
                    f"{summary(times)}; its floor (the fact read, one OpenSSH command) "
                    f"{short(floors)}; fab / floor {ratios(times, floors)}")
        self.record("where a converged run spends its time (medians)", breakdown(runs))

    def fresh(self):
        """A fresh provision of one server beside its floors (FRESH_FLOOR, and SERVED_FLOOR
        that also serves the app, each on another fresh server), taking turns in each round,
        and where fab's time goes."""
        runs, floors = [], {floor: [], served_floor: []}
        for _ in range(self.rounds):
            for provision in (ours, floor, served_floor):
                s = self.server()
                elapsed, *_, proc = provision([s])
                if provision is ours:
                    runs.append((elapsed, proc))
                else:
                    floors[provision].append(elapsed)
                sandbox.destroy(s.name)
        times = [elapsed for elapsed, _ in runs]
        self.record("fresh provision, 1 server, beside its floor",
                    f"{summary(times)}; its floor (apt lists, packages, venv, ufw: one OpenSSH "
                    f"command) {short(floors[floor])}; fab / floor {ratios(times, floors[floor])}"
                    f"; the floor ending with the app served as fab's does "
                    f"{short(floors[served_floor])}; fab / served floor "
                    f"{ratios(times, floors[served_floor])}")
        self.record("where a fresh provision spends its time (medians; packages: both its "
                    "lines)", breakdown(runs))

    def fleet(self, count):
        return [self.server() for _ in range(count)]

    def ten_servers(self, count=10):
        """COUNT servers at once: a fresh provision and the converged re-run beside their
        floors (FRESH_FLOOR and SERVED_FLOOR for the provision; tools taking turns, each on
        fresh servers), fab status, fab's peak memory."""
        tools = {"floor": floor, "served floor": served_floor, **TOOLS}
        fresh, converged = ({t: [] for t in tools} for _ in range(2))
        read, status, rss, one = [], [], [], []
        for _ in range(self.rounds):
            for name, tool in tools.items():
                fleet = self.fleet(count)
                fresh[name].append(tool(fleet)[0])
                if name in TOOLS:
                    converged[name].append(tool(fleet)[0])
                if name == "fab":
                    hosts = ",".join(s.name for s in fleet)
                    read.append(over_ssh(fleet, fact_script())[0])
                    rss.append(fab_with_peak_rss("-H", hosts, "provision")[2])
                    status.append(fab("-H", hosts, "status")[0])
                    one.append(tool(fleet[:1])[0])
                for s in fleet:
                    sandbox.destroy(s.name)
        converged["floor"] = read
        n = f"{count} servers"
        self.compare(f"fresh provision, {n} at once", {t: fresh[t] for t in TOOLS},
                     f"its floor (apt lists, packages, venv, ufw; one OpenSSH command each): "
                     f"{short(fresh['floor'])}; fab / floor {ratios(fresh['fab'], fresh['floor'])}"
                     f"; the floor ending with the app served as fab's does (gunicorn under "
                     f"supervisor, nginx's site, probed): {short(fresh['served floor'])}; "
                     f"fab / served floor {ratios(fresh['fab'], fresh['served floor'])}")
        self.compare(f"converged re-run, {n}", {t: converged[t] for t in TOOLS},
                     f"its floor (the fact read, one OpenSSH command each): {short(read)}; "
                     f"fab / floor {ratios(converged['fab'], read)}; fab {n} / 1 server "
                     f"{ratios(converged['fab'], one)}")
        self.record(f"fab status, {n}", f"{summary(status)}; status / converged re-run "
                                        f"{ratios(status, converged['fab'])}")
        self.record(f"fab's peak memory (RSS), converged re-run of {n}",
                    f"{statistics.median(rss):.0f} MB (max {max(rss):.0f})")

    def deploys(self):
        """Code-only and requirements-change deploys under 20 clients, code-only deploys on
        the idle server, and the floor of a code-only deploy beside each (DEPLOY_FLOOR)."""
        s = self.server()
        fab("-H", s.name, "provision")
        work = Path(tempfile.mkdtemp(prefix="bench-app-"))
        kinds = ("code-only", "floor", "covered floor", "idle", "idle floor", "requirements",
                 "pip")
        failures, served = {k: 0 for k in kinds}, 0
        runs = {k: [] for k in kinds}  # (seconds, process: None for a floor) of each deploy
        kinds_of_failure = {k: Counter() for k in kinds}
        for n in range(self.rounds):
            for kind in kinds:
                app = work / f"{kind}-{n}".replace(" ", "-")
                shutil.copytree(PROJECT / "hello_world", app)
                text = f"Hello {kind} {n}"
                (app / "app.py").write_text((app / "app.py").read_text()
                                            .replace('"Hello world"', repr(text)))
                if kind == "requirements":  # a new requirements.txt: a new virtualenv
                    with open(app / "requirements.txt", "a") as f:
                        f.write(f"# round {n}\nitsdangerous==2.2.0\n")
                if kind.endswith("floor"):
                    def deploy(app=app, guarded=kind == "covered floor"):
                        return deploy_floor(s, app, guarded)
                elif kind == "pip":  # the requirements change's floor: a venv, pip install
                    def deploy(n=n):
                        return over_ssh([s], PIP_FLOOR.format(requirements=requirements(),
                                                              n=n))
                else:
                    def deploy(app=app):
                        return fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": str(app)},
                                   trace=True)
                if kind.startswith("idle"):
                    runs[kind].append(deploy())
                    continue
                with Load(s.address, clients=20, max_seconds=300) as load:
                    time.sleep(0.3)
                    runs[kind].append(deploy())
                    time.sleep(0.3)
                failures[kind] += sum(v for (code, _), v in load.results.items() if code != 200)
                kinds_of_failure[kind].update({f"{code} {body[:40]}": v for (code, body), v
                                               in load.results.items() if code != 200})
                served += load.total
        sandbox.destroy(s.name)
        shutil.rmtree(work)
        times = {k: [elapsed for elapsed, _ in runs[k]] for k in kinds}
        self.record("code-only deploy (20 clients)",
                    f"{summary(times['code-only'])}; its floor (upload, switch, one restart: "
                    f"one OpenSSH command) {short(times['floor'])}; fab / floor "
                    f"{ratios(times['code-only'], times['floor'])}; the floor covered by "
                    f"fab's candidate (started and probed first, stopped after) "
                    f"{short(times['covered floor'])}; fab / covered floor "
                    f"{ratios(times['code-only'], times['covered floor'])}")
        self.record("code-only deploy, idle server",
                    f"{summary(times['idle'])}; its floor {short(times['idle floor'])}; "
                    f"fab / floor {ratios(times['idle'], times['idle floor'])}")
        extra = [a - b for a, b in zip(times["requirements"], times["pip"], strict=True)]
        self.record("requirements-change deploy (20 clients)",
                    f"{summary(times['requirements'])}; its floor (a new venv and pip install "
                    f"of the same requirements, one OpenSSH command, same load) "
                    f"{short(times['pip'])}; fab - floor {short(extra)}")
        for kind, what in (("code-only", "a code-only deploy (20 clients)"),
                           ("idle", "a code-only deploy on the idle server"),
                           ("requirements", "a requirements-change deploy (20 clients)")):
            self.record(f"where {what} spends its time (medians)", breakdown(runs[kind]))
            self.record(f"each round trip of {what} (medians)", round_trips(runs[kind]))
        self.record("failed requests during fab's deploys (20 clients)",
                    f"code-only {failures['code-only']}, requirements-change "
                    f"{failures['requirements']}, of {served} served in all (the floor's "
                    f"restarts, unbridged: {failures['floor']}; covered: "
                    f"{failures['covered floor']})" + "".join(
                        f"; {kind}: {dict(kinds_of_failure[kind])}" for kind in
                        ("code-only", "requirements") if kinds_of_failure[kind]))

    def tutorial(self):
        """The tutorial-shaped app (tests/apps/microblog): code-only deploys and deploys with
        a migration (its release command), each under the same 20-client load."""
        s = self.server()
        work = Path(tempfile.mkdtemp(prefix="bench-microblog-"))
        app = work / "microblog"
        shutil.copytree(PROJECT / "tests/apps/microblog", app)
        (app / "prod.env").write_text("SECRET_KEY=bench\nFLASK_APP=microblog.py\n")
        settings = ["-f", str(app / "deploy.yaml")]
        fab(*settings, "-H", s.name, "deploy")
        runs, failed = {"code-only": [], "migration": []}, 0  # (seconds, process) of each
        routes = app / "app/routes.py"
        for n in range(self.rounds):
            for kind in runs:
                routes.write_text(routes.read_text() + f"\n# {kind} {n}\n")
                if kind == "migration":
                    (app / f"migrations/versions/b{n}.py").write_text(MIGRATION.format(
                        n=n, down=f"b{n - 1}" if n else "0001"))
                with Load(s.address, path="/health", clients=20, max_seconds=300) as load:
                    time.sleep(0.3)
                    runs[kind].append(fab(*settings, "-H", s.name, "deploy"))
                    time.sleep(0.3)
                failed += sum(v for (code, _), v in load.results.items() if code != 200)
        sandbox.destroy(s.name)
        shutil.rmtree(work)
        self.record("tutorial app: code-only deploy (build step, release command, worker)",
                    summary([elapsed for elapsed, _ in runs["code-only"]]))
        self.record("tutorial app: deploy with a migration",
                    summary([elapsed for elapsed, _ in runs["migration"]]))
        self.record("tutorial app: failed requests during those deploys (20 clients)",
                    str(failed))
        for kind, kind_runs in runs.items():
            self.record(f"where a tutorial {kind} deploy spends its time (medians)",
                        breakdown(kind_runs))

    def databases(self):
        """Fresh provision with each app.database (and none), engines taking turns on fresh
        servers; then the converged re-run with that database configured."""
        engines = ("none", "postgresql", "mysql", "sqlite")
        fresh, converged = ({e: [] for e in engines} for _ in range(2))
        trips = {}
        for _ in range(self.rounds):
            for engine in engines:
                env = {"FABRIC_APP_DATABASE": engine}
                s = self.server()
                elapsed, _ = fab("-H", s.name, "provision", env=env)
                fresh[engine].append(elapsed)
                elapsed, proc = fab("-H", s.name, "provision", env=env)
                converged[engine].append(elapsed)
                trips[engine] = recaps(proc)[0][0]
                sandbox.destroy(s.name)
        for engine in engines:
            self.record(f"fresh provision, app.database={engine}", summary(fresh[engine]))
        for engine in engines:
            self.record(f"converged re-run, app.database={engine}",
                        f"{summary(converged[engine])}; {trips[engine]} SSH round trips")

    def served_stack(self):
        """nginx+gunicorn (4 workers) vs `flask run` on the same server, same load."""
        if shutil.which("wrk") is None:
            self.record("served stack", "skipped: wrk is not installed (apt-get install wrk)")
            return
        s = self.server()
        fab("-H", s.name, "provision")
        current = "/srv/hello-world/current"
        sandbox.ssh(s, "ufw allow 5000/tcp >/dev/null && systemd-run --unit=flaskrun "
                       f"--uid=hello-world --working-directory={current} {current}/.venv/bin/flask "
                       "--app app run --host 0.0.0.0 --port 5000")
        sandbox.wait_for(lambda: sandbox.port_open(s.address, 5000), 20, "flask run")
        results = {}
        for label, port in (("nginx+gunicorn", 80), ("flask run", 5000)):
            out = subprocess.run(["wrk", "-t2", "-c20", "-d10s", "--latency",
                                  f"http://{s.address}:{port}/"],
                                 capture_output=True, text=True, check=True).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
            scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
            results[label] = (rps, float(p99.group(1)) * scale)
            self.record(f"{label}: requests/s, p99 (wrk -t2 -c20 -d10s)",
                        f"{rps:.0f} req/s, p99 {results[label][1]:.1f} ms")
        sandbox.destroy(s.name)
        ratio = results["nginx+gunicorn"][0] / results["flask run"][0]
        self.record("served stack / flask run, requests/s", f"{ratio:.2f}x")

    def write(self, out, started):
        machine = (f"{platform.node()}: {os.cpu_count()} cores, Linux {platform.release()}, "
                   f"Python {platform.python_version()}")
        lines = ["# Benchmark results", "",
                 f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} on "
                 f"{machine}, against sandbox servers ({sandbox.SUITES[sandbox.DEFAULT_SUITE]} in "
                 "systemd-nspawn, packages through the sandbox's proxy).", "",
                 f"Command: `make bench` (`.venv/bin/python bench/run.py --rounds {self.rounds}`)",
                 "", "Deploy times are measured while 20 clients load the server through nginx "
                 "(sharing this machine's cores); a failed request is any answer but HTTP 200.",
                 "",
                 ]
        if self.peer_rows:
            lines += ["## Beside the peers", "",
                      "Same servers, same seed stack, tools taking turns each round. "
                      "Times: median (min-max); the ratio columns are the peer's time over "
                      "ours, round by round (above 1: we are faster).", "",
                      "| what | fab | Ansible | pyinfra | Ansible / fab | pyinfra / fab | "
                      "notes |", "|---|---|---|---|---|---|---|"]
            lines += [f"| {what} | {short(t['fab'])} | {short(t['Ansible'])} | "
                      f"{short(t['pyinfra'])} | {ratios(t['Ansible'], t['fab'])} | "
                      f"{ratios(t['pyinfra'], t['fab'])} | {note} |"
                      for what, t, note in self.peer_rows]
            lines += ["", f"Versions: {peer_versions()}.", ""]
        lines += ["## fab alone", "", "| what | result |", "|---|---|"]
        lines += [f"| {what} | {text} |" for what, text in self.rows]
        Path(out).write_text("\n".join(lines) + "\n")
        print(f"bench: wrote {out}")


MIGRATION = '''\
import sqlalchemy as sa
from alembic import op

revision = "b{n}"
down_revision = "{down}"


def upgrade():
    op.create_table("bench{n}", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("bench{n}")
'''


def peer_versions():
    out = []
    for tool, argv in (("fab (Fabric)", [str(PROJECT / ".venv/bin/fab"), "--version"]),
                       ("Ansible", [str(PEER_BIN / "ansible-playbook"), "--version"]),
                       ("pyinfra", [str(PEER_BIN / "pyinfra"), "--version"])):
        first = subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()
        out.append(f"{tool}: {' '.join(first[:2]) if tool.startswith('fab') else first[0]}")
    return "; ".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(PROJECT / "bench/RESULTS.md"))
    parser.add_argument("--only", choices=["peers", "peers-three", "converged", "fresh", "ten",
                                           "deploys", "tutorial", "databases", "served"])
    args = parser.parse_args()
    try:
        sandbox.require_root_linux()
    except sandbox.SandboxError as e:
        raise SystemExit(f"bench: {e}") from None
    bench, started = Bench(args.rounds), time.time()
    parts = {"peers": bench.peers_one_server, "peers-three": bench.peers_three_servers,
             "converged": bench.converged, "fresh": bench.fresh, "ten": bench.ten_servers,
             "deploys": bench.deploys, "tutorial": bench.tutorial,
             "databases": bench.databases, "served": bench.served_stack}
    peers_wanted = args.only in (None, "peers", "peers-three", "ten")
    if peers_wanted and not ((PEER_BIN / "pyinfra").exists()
                             and (PEER_BIN / "ansible-playbook").exists()):
        raise SystemExit("bench: the peers are not installed: run `make bench`")
    try:
        for name, part in parts.items():
            if args.only in (None, name):
                part()
    finally:
        for s in sandbox.servers():
            if s.name.startswith("bench-"):
                sandbox.destroy(s.name)
    bench.write(args.out, started)


if __name__ == "__main__":
    main()
