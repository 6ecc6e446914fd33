"""Step 1: the system packages the stack needs, installed with apt.

apt runs detached on the server (tasks.core.detached): a connection lost mid-install
no longer leaves dpkg half-done. One interrupted anyway (a reboot, a kill) is repaired
first with `dpkg --configure -a`, as apt itself asks."""

from tasks.core import DeployError, detached
from tasks.facts import wanted_packages
from tasks.lock import work_unit
from tasks.plan import Command, Plan, Step

APT = ("DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=120 "
       "-o Acquire::Retries=3 "
       "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")


def missing(s, facts):
    """(missing packages, whether the apt lists must be refreshed first)."""
    if not facts.debian_like:
        raise DeployError(f"not a Debian/Ubuntu server (ID={facts.os_id or 'unknown'}); "
                          "this tool supports Debian and Ubuntu only")
    absent = [p for p in wanted_packages(s) if not facts.packages.get(p)]
    stale = facts.apt_age is None or facts.apt_age > s.apt_cache_valid_time
    return absent, bool(absent) and stale


REPAIR = "dpkg --force-confdef --force-confold --configure -a >/dev/null"


def plan(s, facts):
    absent, refresh = missing(s, facts)
    repair = facts.dpkg_interrupted
    if not absent and not repair:
        return Plan(ok=f"{len(wanted_packages(s))} packages present")
    said = ", ".join(filter(None, ["repaired an interrupted dpkg (dpkg --configure -a)"
                                   if repair else "",
                                   f"installed {', '.join(absent)}" if absent else ""]))
    lines = ["set -e", "export DEBIAN_FRONTEND=noninteractive"]
    if repair:
        lines.append(REPAIR)
    if absent:
        install = f"{APT} install {' '.join(absent)} >/dev/null"
        # A download that failed even after apt's retries (a mirror mid-sync, a dropped
        # connection) gets one more try on fresh lists, as apt's own message advises.
        lines += (["apt-get -q update >/dev/null"] if refresh else []) + \
            [f"{install} || {{ apt-get -q update >/dev/null && {install}; }}"]
    return Plan([Command(said, detached(work_unit(s, "apt"), "\n".join(lines), 900),
                         timeout=960)])


STEP = Step("packages", lambda h: plan(h.settings, h.facts),
            "Install python3-venv, nginx, supervisor and ufw (apt).")
