"""Step 1: the system packages the stack needs, installed with apt (on a fresh server, what
only the steps after the app's use goes on installing in the background beside them).

apt runs detached on the server (tasks.units.detached): a connection lost mid-install
no longer leaves dpkg half-done. One interrupted anyway (a reboot, a kill) is repaired
first with `dpkg --configure -a`, as apt itself asks."""

from tasks.apt import REPAIR, install
from tasks.plan import Call, Command, Plan, Step
from tasks.shell import DeployError
from tasks.units import awaited, detached, in_background, work_unit


def missing(s, facts):
    """(missing packages, whether the apt lists must be refreshed first)."""
    if not facts.debian_like:
        raise DeployError(f"not a Debian/Ubuntu server (ID={facts.os_id or 'unknown'}); "
                          "this tool supports Debian and Ubuntu only")
    absent = sorted(p for p in facts.needs.packages if not facts.packages.get(p))
    stale = facts.apt_age is None or facts.apt_age > s.apt_cache_valid_time
    return absent, bool(absent) and stale


LATER = "apt-later"  # the background install's work unit (tasks.units.work_unit)


def plan(s, facts):
    absent, refresh = missing(s, facts)
    repair = facts.dpkg_interrupted
    if not absent and not repair:
        return Plan(ok=f"{len(facts.needs.packages)} packages present")
    now, later = absent, []
    if not facts.current_hash:  # no live release yet: what only the steps after the app's
        # use installs in the background while the database and app steps build the first
        now = [p for p in absent if p not in facts.needs.later]
        later = [p for p in absent if p in facts.needs.later] if now else []
        now = now or absent
    said = ", ".join(filter(None, ["repaired an interrupted dpkg (dpkg --configure -a)"
                                   if repair else "",
                                   f"installed {', '.join(now)}" if now else "",
                                   f"installing {', '.join(later)} in the background"
                                   if later else ""]))
    lines = ["set -e", "export DEBIAN_FRONTEND=noninteractive"] + \
        ([REPAIR] if repair else []) + (install(now, refresh) if now else [])
    script = detached(work_unit(s, "apt"), "\n".join(lines), 900)
    if later:
        script = f"({script}) || exit $?\n" + in_background(work_unit(s, LATER), "\n".join(
            ["set -e", *install(later, False), f"echo installed {', '.join(later)}"]), 900)
    return Plan([Command(said, script, timeout=960)])


def collect(h):
    """Wait for the background install and say what it did (or fail with apt's error)."""
    out = h.change(awaited(work_unit(h.settings, LATER), 960), timeout=1000)
    return (out.strip().splitlines() or ["installed"])[-1] + " (in the background)"


STEP = Step("packages", lambda h: plan(h.settings, h.facts),
            "Install python3-venv, nginx, supervisor and ufw (apt).")
BACKGROUND = Step("packages", lambda h: Plan([Call("", collect, "wait for the packages "
                                                   "apt installs in the background")]))
