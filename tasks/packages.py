"""Step 1: the system packages the stack needs, installed with apt."""

from tasks.core import CHANGED, OK, DeployError
from tasks.facts import wanted_packages

APT = ("DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=120 "
       "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")


def plan(s, facts):
    """(missing packages, whether the apt lists must be refreshed first)."""
    if not facts.debian_like:
        raise DeployError(f"not a Debian/Ubuntu server (ID={facts.os_id or 'unknown'}); "
                          "this tool supports Debian and Ubuntu only")
    missing = [p for p in wanted_packages(s) if not facts.packages.get(p)]
    stale = facts.apt_age is None or facts.apt_age > s.apt_cache_valid_time
    return missing, bool(missing) and stale


def converge(h):
    missing, refresh = plan(h.settings, h.facts)
    if not missing:
        return OK, ""
    h.change(("apt-get -q update >/dev/null\n" if refresh else "")
             + f"{APT} install {' '.join(missing)} >/dev/null", timeout=900)
    return CHANGED, f"installed {', '.join(missing)}"
