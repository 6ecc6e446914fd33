"""Benchmarks: whole `fab` commands on fresh sandbox servers, timed from outside.

    .venv/bin/python bench/run.py [--rounds 5] [--out bench/RESULTS.md]

Every figure is the wall time of a whole command (process start to exit), over
ROUNDS rounds, reported as median, min and max. Needs root (it boots sandbox servers).
"""

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tasks import sandbox  # noqa: E402
from tests.load import Load  # noqa: E402

FAB = str(PROJECT / ".venv/bin/fab")


def fab(*args, env=None):
    """Run fab; return (seconds, completed process)."""
    start = time.monotonic()
    proc = subprocess.run([FAB, "-S", str(sandbox.STATE / "ssh_config"), *args],
                          capture_output=True, text=True, cwd=PROJECT, check=False,
                          env={**os.environ, **(env or {})})
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: fab {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc


def round_trips(proc):
    return [int(n) for n in re.findall(r"\((\d+) SSH round trips\)", proc.stdout)]


def summary(values, unit="s"):
    return (f"{statistics.median(values):.2f} {unit} (min {min(values):.2f}, "
            f"max {max(values):.2f}, n={len(values)})")


class Bench:
    def __init__(self, rounds):
        self.rounds = rounds
        self.rows = []  # (what, summary text)
        self.names = iter(f"bench-{i}" for i in range(1, 1000))

    def server(self):
        return sandbox.boot(next(self.names))

    def record(self, what, text):
        print(f"{what}: {text}", flush=True)
        self.rows.append((what, text))

    def provision_figures(self):
        fresh, converged, trips, workers = [], [], [], []
        for _ in range(self.rounds):
            s = self.server()
            fresh.append(fab("-H", s.name, "provision")[0])
            elapsed, proc = fab("-H", s.name, "provision")
            converged.append(elapsed)
            trips += round_trips(proc)
            workers.append(fab("-H", s.name, "provision", env={"FABRIC_APP_WORKERS": "3"})[0])
            sandbox.destroy(s.name)
        self.record("fresh provision, 1 server", summary(fresh))
        self.record("converged re-run, 1 server", summary(converged))
        self.record("SSH round trips of a converged re-run", f"{statistics.median(trips):.0f}")
        self.record("one-line change (workers 4->3) re-run", summary(workers))

    def three_servers(self):
        servers = [self.server() for _ in range(3)]
        hosts = ",".join(s.name for s in servers)
        fresh = fab("-H", hosts, "provision")[0]
        converged = [fab("-H", hosts, "provision")[0] for _ in range(self.rounds)]
        one = [fab("-H", servers[0].name, "provision")[0] for _ in range(self.rounds)]
        for s in servers:
            sandbox.destroy(s.name)
        self.record("fresh provision, 3 servers in parallel", f"{fresh:.2f} s (n=1)")
        self.record("converged re-run, 3 servers", summary(converged))
        ratio = statistics.median(converged) / statistics.median(one)
        self.record("converged re-run, 3 servers / 1 server", f"{ratio:.2f}x")

    def deploys(self):
        s = self.server()
        fab("-H", s.name, "provision")
        work = Path(tempfile.mkdtemp(prefix="bench-app-"))
        code_only, with_reqs, failures = [], [], {"code-only": 0, "requirements": 0}
        served = 0
        for n in range(self.rounds):
            for kind, times in (("code-only", code_only), ("requirements", with_reqs)):
                app = work / f"{kind}-{n}"
                shutil.copytree(PROJECT / "hello_world", app)
                text = f"Hello {kind} {n}"
                (app / "app.py").write_text((app / "app.py").read_text()
                                            .replace('"Hello world"', repr(text)))
                if kind == "requirements":  # a new requirements.txt: a new virtualenv
                    with open(app / "requirements.txt", "a") as f:
                        f.write(f"# round {n}\nitsdangerous==2.2.0\n")
                with Load(s.address, clients=20, max_seconds=300) as load:
                    time.sleep(0.3)
                    elapsed, _ = fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": str(app)})
                    time.sleep(0.3)
                times.append(elapsed)
                failures[kind] += sum(v for (code, _), v in load.results.items() if code != 200)
                served += load.total
        sandbox.destroy(s.name)
        shutil.rmtree(work)
        self.record("code-only deploy", summary(code_only))
        self.record("requirements-change deploy", summary(with_reqs))
        self.record("failed requests during code-only deploys (20 clients)",
                    str(failures["code-only"]))
        self.record("failed requests during requirements-change deploys (20 clients)",
                    str(failures["requirements"]))
        self.record("requests served during all those deploys", str(served))

    def served_stack(self):
        """nginx+gunicorn (4 workers) vs `flask run` on the same server, same load."""
        if shutil.which("wrk") is None:
            self.record("served stack", "skipped: wrk is not installed (apt-get install wrk)")
            return
        s = self.server()
        fab("-H", s.name, "provision")
        current = "/home/tom/hello-world/current"
        sandbox.ssh(s, "ufw allow 5000/tcp >/dev/null && systemd-run --unit=flaskrun "
                       f"--uid=tom --working-directory={current} {current}/.venv/bin/flask "
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
                 f"{machine}, against sandbox servers (Debian 12 in systemd-nspawn, packages "
                 "through the sandbox's proxy).", "",
                 f"Command: `make bench` (`.venv/bin/python bench/run.py --rounds {self.rounds}`)",
                 "", "Deploy times are measured while 20 clients load the server through nginx "
                 "(sharing this machine's cores); a failed request is any answer but HTTP 200.",
                 "",
                 "| what | result |", "|---|---|"]
        lines += [f"| {what} | {text} |" for what, text in self.rows]
        Path(out).write_text("\n".join(lines) + "\n")
        print(f"bench: wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(PROJECT / "bench/RESULTS.md"))
    parser.add_argument("--only", choices=["provision", "three", "deploys", "served"])
    args = parser.parse_args()
    try:
        sandbox.require_root_linux()
    except sandbox.SandboxError as e:
        raise SystemExit(f"bench: {e}") from None
    bench, started = Bench(args.rounds), time.time()
    parts = {"provision": bench.provision_figures, "three": bench.three_servers,
             "deploys": bench.deploys, "served": bench.served_stack}
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
