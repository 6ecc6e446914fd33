"""The fleet: fifty small servers (one gunicorn worker, no database), each of fab's whole
commands beside its floor (parallel OpenSSH doing the same reads or the same work), the
operator's CPU and memory per host, and from those slopes a projection to 1,000 hosts."""

import resource
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import APP, DEFAULT_SETTINGS, fab, fab_with_peak_rss
from floors import SERVED_FLOOR, deploy_floor, fact_script, over_ssh
from report import ratios, short, summary

import sandbox
from tasks.status import status_script

SMALL = {"FABRIC_APP_WORKERS": "1"}  # one gunicorn worker each, no database
BOOT_BATCH = 10  # servers booted at a time, each batch up before the next


def available_mb():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("bench: no MemAvailable in /proc/meminfo")


def cpu_of(run):
    """(RUN()'s result, the CPU seconds its child processes used)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def boot_fleet(bench, count):
    fleet = []
    while len(fleet) < count:
        fleet += [bench.server() for _ in range(min(BOOT_BATCH, count - len(fleet)))]
    return fleet


def hosts(fleet):
    return ",".join(s.name for s in fleet)


def converged_cpu(fleet, rounds):
    """The converged re-run of FLEET: [(seconds, CPU seconds)] over ROUNDS."""
    return [cpu_of(lambda: fab("-H", hosts(fleet), "provision", env=SMALL)[0])
            for _ in range(rounds)]


def fifty(bench, count=50):
    """COUNT servers: fresh provision beside the served floor (on as many other fresh
    servers), then on fab's: the converged re-run and status beside the same reads by
    parallel OpenSSH, a code-only deploy in two batches beside the floor's deploy in the
    same batches; the operator's CPU at 1, 10 and COUNT hosts; peak memory; a projection."""
    rounds, n = bench.rounds, f"{count} servers"
    floor_fleet = boot_fleet(bench, count)
    floor_time = over_ssh(floor_fleet, SERVED_FLOOR.replace("--workers 4", "--workers 1"))[0]
    for s in floor_fleet:
        sandbox.destroy(s.name)
    free_before = available_mb()
    fleet = boot_fleet(bench, count)
    fresh = fab("-H", hosts(fleet), "provision", env=SMALL)[0]
    per_server = (free_before - available_mb()) / count
    bench.record(f"fresh provision, {n} at once",
                 f"{fresh:.1f} s; its floor (the served floor, one OpenSSH command each, on "
                 f"{count} other fresh servers) {floor_time:.1f} s; fab / floor "
                 f"{fresh / floor_time:.2f}x")
    bench.record(f"memory per sandbox server, {n} provisioned",
                 f"about {per_server:.0f} MB each (this machine's available memory fell "
                 f"{per_server * count / 1024:.1f} GB)")
    runs, reads, status, status_floor = [], [], [], []
    for _ in range(rounds):
        runs += converged_cpu(fleet, 1)
        reads.append(over_ssh(fleet, fact_script())[0])
        status.append(fab("-H", hosts(fleet), "status", env=SMALL)[0])
        status_floor.append(over_ssh(fleet, status_script(DEFAULT_SETTINGS))[0])
    times = [t for t, _ in runs]
    bench.record(f"converged re-run, {n}",
                 f"{summary(times)}; its floor (the fact read, parallel OpenSSH) "
                 f"{short(reads)}; fab / floor {ratios(times, reads)}")
    bench.record(f"fab status, {n}", f"{summary(status)}; its floor (the same reads, "
                 f"parallel OpenSSH) {short(status_floor)}; fab / floor "
                 f"{ratios(status, status_floor)}")
    deploys, floors = code_only_deploys(fleet, rounds)
    bench.record(f"code-only deploy, {n} in two batches",
                 f"{summary(deploys)}; its floor (upload, switch, restart covered by a "
                 f"candidate, probe: one OpenSSH command each, the same two batches) "
                 f"{short(floors)}; fab / floor {ratios(deploys, floors)}")
    operator(bench, fleet, runs, rounds)
    for s in fleet:
        sandbox.destroy(s.name)


def operator_only(bench, count=50):
    """The operator's part of `fifty` alone: COUNT servers provisioned (not timed), then its
    CPU and memory per host, converged, and the projection."""
    fleet = boot_fleet(bench, count)
    fab("-H", hosts(fleet), "provision", env=SMALL)
    operator(bench, fleet, converged_cpu(fleet, bench.rounds), bench.rounds)
    for s in fleet:
        sandbox.destroy(s.name)


def code_only_deploys(fleet, rounds):
    """fab deploy --serial half the fleet, and the floor in the same halves; seconds each."""
    half = (len(fleet) + 1) // 2
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    deploys, floors = [], []
    for n in range(rounds):
        app = work / f"app-{n}"
        app.mkdir()
        for name in ("app.py", "requirements.txt"):
            (app / name).write_text((APP / name).read_text())
        (app / "app.py").write_text((app / "app.py").read_text()
                                    .replace('"Hello world"', repr(f"Hello fleet {n}")))
        deploys.append(fab("-H", hosts(fleet), "deploy", "--serial", str(half),
                           env={**SMALL, "FABRIC_APP_SOURCE": str(app)})[0])
        floors.append(sum(batch_floor(fleet[i:i + half], app)
                          for i in range(0, len(fleet), half)))
    return deploys, floors


def batch_floor(batch, app):
    """DEPLOY_FLOOR (covered by a candidate, as fab's) on each server of BATCH at once."""
    start = time.monotonic()
    with ThreadPoolExecutor(len(batch)) as pool:
        list(pool.map(lambda s: deploy_floor(s, app, True), batch))
    return time.monotonic() - start


def operator(bench, fleet, runs, rounds):
    """The operator's CPU on 1, 10 and all of FLEET converged, the slopes, its peak memory,
    and what they project for 1,000 hosts."""
    cpu = {1: [c for _, c in converged_cpu(fleet[:1], rounds)],
           10: [c for _, c in converged_cpu(fleet[:10], rounds)],
           len(fleet): [c for _, c in runs]}
    med = {k: statistics.median(v) for k, v in cpu.items()}
    slope_10 = (med[10] - med[1]) / 9
    slope = (med[len(fleet)] - med[10]) / (len(fleet) - 10)
    rss = {k: fab_with_peak_rss("-H", hosts(fleet[:k]), "provision", env=SMALL)[2]
           for k in (1, len(fleet))}
    rss_slope = (rss[len(fleet)] - rss[1]) / (len(fleet) - 1)
    bench.record("operator CPU of a converged run (user + system, medians)",
                 "; ".join(f"{k} host{'s' if k > 1 else ''} {v:.2f} s" for k, v in med.items())
                 + f"; per extra host {slope_10 * 1000:.0f} ms (1 to 10), "
                   f"{slope * 1000:.0f} ms (10 to {len(fleet)})")
    bench.record("operator peak memory (RSS), converged run",
                 f"1 host {rss[1]:.0f} MB, {len(fleet)} hosts {rss[len(fleet)]:.0f} MB: "
                 f"{rss_slope:.2f} MB per extra host")
    bench.record("projection to 1,000 hosts (from the slopes above)",
                 f"operator CPU {med[1] + slope * 999:.0f} s for a converged run, on one core "
                 f"(Python's GIL: one process's threads share one); peak memory "
                 f"{rss[1] + rss_slope * 999:.0f} MB; fab runs at most 64 hosts at a time, so "
                 f"the wall time is at least the CPU time and at least 1000/64 waves of the "
                 f"slowest host's run. Assumes: the slopes stay linear past {len(fleet)} hosts, "
                 f"the servers answer as these sandboxes do (same round trips, same sizes), "
                 f"and this machine's cores")
