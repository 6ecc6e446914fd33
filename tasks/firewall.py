"""Step 5: ufw with only what must be open, without ever locking the operator out."""

from fabric import Connection

from tasks.core import CHANGED, OK, DeployError, q
from tasks.hostkeys import secure
from tasks.settings import raw

DEADMAN = "fab-ufw-revert"


def wanted_rules(facts):
    """The allow rules, SSH first: the port this very connection came in on."""
    return [f"allow {facts.ssh_port}/tcp", "allow 80/tcp"]


def plan(facts):
    missing = [rule for rule in wanted_rules(facts) if rule not in facts.ufw_rules]
    return missing, not facts.ufw_active


def prove_fresh_login(c):
    """Open a brand-new SSH connection with the same settings and run a command."""
    fresh = secure(Connection(c.original_host, user=c.user, port=c.port, config=c.config,
                              connect_kwargs=c.connect_kwargs, connect_timeout=10),
                   raw(c.config)["host_keys"])
    try:
        return fresh.run("true", hide=True, warn=True, timeout=15).ok
    except Exception:
        return False
    finally:
        fresh.close()


def converge(h):
    f = h.facts
    missing, enable = plan(f)
    changes = []
    if missing:
        h.change("\n".join(f"ufw {rule} >/dev/null" for rule in missing))
        changes.append(f"allowed {', '.join(r.split()[1] for r in missing)}")
    if enable:
        # The dead-man switch turns the firewall off again unless we cancel it after proof.
        h.change(f"systemctl stop {DEADMAN}.timer >/dev/null 2>&1 || true\n"
                 f"systemd-run --quiet --unit={DEADMAN} "
                 f"--on-active={h.settings.firewall_revert_after} /usr/sbin/ufw --force disable\n"
                 "ufw --force enable >/dev/null")
        if not h.dry_run and not prove_fresh_login(h.c):
            h.change(f"ufw --force disable >/dev/null; systemctl stop {DEADMAN}.timer || true")
            raise DeployError(f"a fresh SSH connection failed after enabling ufw, so it was "
                              f"turned off again; check that port {f.ssh_port} is reachable")
        h.change(f"systemctl stop {q(DEADMAN)}.timer >/dev/null 2>&1 || true")
        changes.append("enabled ufw")
    if f.services.get("ufw", ("", ""))[0] != "enabled":
        h.change("systemctl enable ufw >/dev/null 2>&1")
        changes.append("enabled ufw at boot")
    return (CHANGED, ", ".join(changes)) if changes else (OK, "")
