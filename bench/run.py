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
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import (
    PEER_BIN,
    PROJECT,
    fab,
    fab_with_peak_rss,
    requirements,
)
from fleet import fifty, operator_only
from floors import PIP_FLOOR, deploy_floor, fact_script, floor, over_ssh, served_floor
from report import breakdown, ratios, recaps, round_trips, short, summary
from tools import TOOLS, ours, peer_versions

import sandbox
from tests.load import Load


def pip(servers):
    """fab provision with app.installer: pip."""
    return ours(servers, installer="pip")


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
        runs, floors = [], {floor: [], served_floor: [], pip: []}
        for _ in range(self.rounds):
            for provision in (ours, floor, served_floor, pip):
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
        self.record("fresh provision, 1 server, uv beside pip",
                    f"with app.installer: pip {short(floors[pip])}; pip / uv "
                    f"{ratios(floors[pip], times)}")
        self.record("where a fresh provision spends its time (medians; packages: both its "
                    "lines)", breakdown(runs))

    def fifty(self):
        fifty(self)

    def operator(self):
        operator_only(self)

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
                 "requirements, pip", "pip")
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
                if kind.startswith("requirements"):  # a new requirements.txt: a new venv
                    with open(app / "requirements.txt", "a") as f:
                        f.write(f"# {kind}, round {n}\nitsdangerous==2.2.0\n")
                if kind.endswith("floor"):
                    def deploy(app=app, guarded=kind == "covered floor"):
                        return deploy_floor(s, app, guarded)
                elif kind == "pip":  # the requirements change's floor: a venv, pip install
                    def deploy(n=n):
                        return over_ssh([s], PIP_FLOOR.format(requirements=requirements(),
                                                              n=n))
                else:
                    installer = "pip" if kind.endswith("pip") else "uv"

                    def deploy(app=app, installer=installer):
                        return fab("-H", s.name, "deploy", env={
                            "FABRIC_APP_SOURCE": str(app), "FABRIC_APP_INSTALLER": installer},
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
                    f"{short(times['pip'])}; fab - floor {short(extra)}; with app.installer: "
                    f"pip {short(times['requirements, pip'])}, pip / uv "
                    f"{ratios(times['requirements, pip'], times['requirements'])}")
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(PROJECT / "bench/RESULTS.md"))
    parser.add_argument("--only", choices=["peers", "peers-three", "converged", "fresh", "ten",
                                           "deploys", "tutorial", "databases", "served",
                                           "fifty", "operator"])
    args = parser.parse_args()
    try:
        sandbox.require_root_linux()
    except sandbox.SandboxError as e:
        raise SystemExit(f"bench: {e}") from None
    bench, started = Bench(args.rounds), time.time()
    parts = {"peers": bench.peers_one_server, "peers-three": bench.peers_three_servers,
             "converged": bench.converged, "fresh": bench.fresh, "ten": bench.ten_servers,
             "deploys": bench.deploys, "tutorial": bench.tutorial,
             "databases": bench.databases, "served": bench.served_stack,
             "fifty": bench.fifty, "operator": bench.operator}
    peers_wanted = args.only in (None, "peers", "peers-three", "ten")
    if peers_wanted and not ((PEER_BIN / "pyinfra").exists()
                             and (PEER_BIN / "ansible-playbook").exists()):
        raise SystemExit("bench: the peers are not installed: run `make bench`")
    try:
        for name, part in parts.items():
            if args.only == name or (args.only is None and name != "operator"):  # in fifty
                part()
    finally:
        for s in sandbox.servers():
            if s.name.startswith("bench-"):
                sandbox.destroy(s.name)
    bench.write(args.out, started)


if __name__ == "__main__":
    main()
