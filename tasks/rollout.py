"""The rollout of a task over many hosts, as data: which hosts run together, in which order,
which of them leave the balancers while they change, and where the release phase runs.

`rollout()` is a pure function of the hosts, app.roles and the run's options; the
executor (tasks/executor.py) only runs the batches it returns.
"""

from dataclasses import dataclass

from tasks.config import ROLES
from tasks.names import bare


@dataclass(frozen=True)
class Batch:
    """Hosts (as given to -H) that run at once."""

    hosts: tuple
    drain: tuple = ()  # of them, the web hosts taken out of the balancers while they run
    release_phase_done: bool = False  # the release command ran already (on the first host)


def in_batches(hosts, size, release_phase=False):
    """HOSTS all at once (SIZE 0) or SIZE at a time. With a RELEASE_PHASE (a deploy's
    release command) and several hosts, the first host goes alone first: the command runs
    there, once, before any other host moves."""
    hosts, first = list(hosts), []
    if release_phase and len(hosts) > 1:
        first, hosts = [Batch(tuple(hosts[:1]))], hosts[1:]
    size = size if size > 0 else max(len(hosts), 1)
    return first + [Batch(tuple(hosts[i:i + size]), release_phase_done=bool(first))
                    for i in range(0, len(hosts), size)]


def drains(hosts, roles, dry_run=False):
    """Whether a rolling run on HOSTS takes web hosts out of balancers (when they serve):
    with balancers and more than one web host, never in a dry run. A lone web host is
    never drained: nothing else could answer (its own candidate covers its restarts)."""
    webs = set(roles.get("web", []))
    return bool(roles.get("lb") and len(webs) > 1 and not dry_run
                and any(bare(h) in map(bare, webs) for h in hosts))


def rollout(hosts, roles, serial=0, rolling=True, release_phase=False, draining=False):
    """The batches of a run on HOSTS, in order.

    Without app.roles (or for a task that is not rolling): all at once, or --serial at a
    time, the release phase's host first. With roles, a rolling task takes the database
    host first, then the web and worker hosts, then the balancers. DRAINING (the balancers
    serve): the web hosts go one batch at a time (--serial, default 1, never all of them),
    each out of the balancers while it changes."""
    if not (roles and rolling):
        return in_batches(hosts, serial, release_phase and rolling)
    role_of = {bare(h): role for role, members in roles.items() for h in members}
    by_role = {role: [h for h in hosts if role_of.get(bare(h)) == role] for role in ROLES}
    strangers = [h for h in hosts if bare(h) not in role_of]  # told they have no role
    apps = by_role["web"] + by_role["worker"] + strangers
    first = [Batch(tuple(by_role["db"]), release_phase_done=True)] if by_role["db"] else []
    last = [Batch(tuple(by_role["lb"]), release_phase_done=True)] if by_role["lb"] else []
    if draining:
        serial = min(serial or 1, max(len(by_role["web"]) - 1, 1))
    middle = in_batches(apps, serial, release_phase)
    if draining:
        webs = set(by_role["web"])
        middle = [Batch(b.hosts, tuple(h for h in b.hosts if h in webs), b.release_phase_done)
                  for b in middle]
    return first + middle + last
