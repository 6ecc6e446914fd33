"""Hosts by role (app.roles): which part of the stack a host converges, and the addresses
the hosts know each other by.

Without app.roles every host is a web host: the whole stack, as on one server. With it,
`web` hosts run the app behind their own nginx, open to the balancers only; `lb` hosts run
nginx balancing across them (passive failover, TLS ended there); `worker` hosts run the
app's extra processes (app.processes) and nothing else; the `db` host runs the database
and Redis, listening on its own address, open to the web and worker hosts only; the
`backup` host keeps the off-site backups, and only the database's host reaches it (no run
converges it: any SSH server with sudo will do). A run takes the database host first, then
the web hosts in batches taken out of the balancer while they change, then the workers,
then the balancers.
"""

import dataclasses
import socket

from tasks.config import ROLES
from tasks.names import bare
from tasks.shell import DeployError


def roles_of(s, host):
    """The roles of HOST (as given to -H, with or without user@ and :port): web alone when
    app.roles is not set."""
    if not s.roles:
        return frozenset({"web"})
    return frozenset(role for role, hosts in s.roles.items()
                     if bare(host) in map(bare, hosts))


def address(config, host):
    """The IPv4 address HOST is reached at (its ssh_config HostName, resolved here): what the
    balancer proxies to and what a web host's firewall lets in."""
    # The ssh_config lookup alone: a Connection reads the config every host's thread
    # shares, and a run saw it empty there once ("no config key found for 'user'").
    ssh_config = getattr(config, "base_ssh_config", None)  # Fabric's config has one
    name = ssh_config.lookup(bare(host)).get("hostname", bare(host)) if ssh_config \
        else bare(host)
    try:
        return socket.gethostbyname(name)
    except OSError as e:
        raise DeployError(f"cannot resolve {host} ({name}): {e}") from None


def ssh_port(config, host):
    """The SSH port HOST is reached at: its -H `:port`, its ssh_config Port, or 22."""
    given = host.rpartition("@")[2].partition(":")[2]
    ssh_config = getattr(config, "base_ssh_config", None)
    found = ssh_config.lookup(bare(host)).get("port", "22") if ssh_config else "22"
    port = given or found
    return int(port) if str(port).isdigit() else 22


def for_host(s, config, host):
    """The settings as HOST sees them: its roles; the web hosts' addresses (for a balancer)
    or the balancers' (for a web host, which then serves them plain HTTP: TLS ends at the
    balancer); the database host's address (for an app host) or the app hosts' (for the
    database host). DeployError if HOST has no role."""
    roles = roles_of(s, host)
    if not roles:
        raise DeployError(f"{host} is in none of app.roles ({', '.join(sorted(s.roles))}): "
                          "add it to a role, or leave it out of -H")
    if roles == {"backup"}:
        raise DeployError(f"{host} is the backup host (app.roles.backup): fab reaches it from "
                          "the database's host only; leave it out of -H")

    def addresses(*of):
        return tuple(address(config, h) for role in of for h in s.roles.get(role, []))
    upstream = addresses("web") if "lb" in roles else ()
    balancers = addresses("lb") if "web" in roles else ()
    return dataclasses.replace(
        s, host_roles=roles, upstream=upstream, balancers=balancers,
        tls=s.tls if "web" in roles and not balancers or "lb" in roles else "off",
        database_host=addresses("db")[0] if s.roles.get("db") else "",
        database_clients=addresses("web", "worker") if "db" in roles else (),
        with_workers=bool(s.roles.get("worker")),
        runs_jobs=host == (s.roles.get("worker") or s.roles.get("web") or [host])[0])


def selected(roles, hosts):
    """The hosts a run takes: -H's (a role's name stands for its hosts), or every host of
    app.roles but the backup host when -H is not given; each once, in the order of ROLES."""
    named = [h for h in hosts.split(",") if h] if hosts else \
        [r for r in ROLES if r in roles and r != "backup"]
    out = []
    for name in named:
        out += roles.get(name, []) if name in roles else [name]
    rank = {h: i for i, role in enumerate(ROLES) for h in roles.get(role, [])}
    unique = list(dict.fromkeys(out))
    return sorted(unique, key=lambda h: rank.get(h, -1))
