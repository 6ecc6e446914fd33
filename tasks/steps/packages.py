"""Step 1: the system packages the stack needs, installed with apt."""

from tasks.core import DeployError
from tasks.facts import wanted_packages
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


def plan(s, facts):
    absent, refresh = missing(s, facts)
    if not absent:
        return Plan(ok=f"{len(wanted_packages(s))} packages present")
    install = f"{APT} install {' '.join(absent)} >/dev/null"
    # A download that failed even after apt's retries (a mirror mid-sync, a dropped
    # connection) gets one more try on fresh lists, as apt's own message advises.
    return Plan([Command(f"installed {', '.join(absent)}",
                         ("apt-get -q update >/dev/null\n" if refresh else "")
                         + f"{install} || {{ apt-get -q update >/dev/null && {install}; }}",
                         timeout=900)])


STEP = Step("packages", lambda h: plan(h.settings, h.facts),
            "Install python3-venv, nginx, supervisor and ufw (apt).")
