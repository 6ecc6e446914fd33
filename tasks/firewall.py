"""Step 5: ufw with only what must be open, without ever locking the operator out."""

import time

from fabric import Connection
from paramiko.ssh_exception import AuthenticationException

from tasks.core import CHANGED, OK, DeployError, q
from tasks.hostkeys import secure
from tasks.settings import raw

DEADMAN = "fab-ufw-revert"


HTTPS = "allow 443/tcp"


def wanted_rules(s, facts):
    """The allow rules, SSH first: the port this very connection came in on."""
    return [f"allow {facts.ssh_port}/tcp", "allow 80/tcp", *([HTTPS] if s.tls != "off" else [])]


def plan(s, facts):
    """(rules to add, rules to delete, whether to enable ufw)."""
    wanted = wanted_rules(s, facts)
    missing = [rule for rule in wanted if rule not in facts.ufw_rules]
    unwanted = [HTTPS] if HTTPS in facts.ufw_rules and HTTPS not in wanted else []
    return missing, unwanted, not facts.ufw_active


def prove_fresh_login(c, keys_only=False, sudo=False, tries=5):
    """Open a brand-new SSH connection with the same settings and run a command.

    KEYS_ONLY leaves out any login password; SUDO also proves sudo works there. A refused
    or dropped connection is tried again (sshd re-executes itself on reload), a refused
    login is not."""
    connect_kwargs = {k: v for k, v in c.connect_kwargs.items()
                      if not (keys_only and k == "password")}
    kwargs = {"hide": True, "warn": True, "timeout": 15, "in_stream": False}
    for attempt in range(tries):
        fresh = secure(Connection(c.original_host, user=c.user, port=c.port, config=c.config,
                                  connect_kwargs=connect_kwargs, connect_timeout=10),
                       raw(c.config)["host_keys"])
        try:
            if sudo and c.config.sudo.password:
                return fresh.sudo("true", **kwargs).ok
            return fresh.run("sudo -n true" if sudo else "true", **kwargs).ok
        except AuthenticationException:
            return False
        except Exception:
            time.sleep(1 + attempt)
        finally:
            fresh.close()
    return False


def converge(h):
    f = h.facts
    missing, unwanted, enable = plan(h.settings, f)
    changes = []
    if missing:
        h.change("\n".join(f"ufw {rule} >/dev/null" for rule in missing))
        changes.append(f"allowed {', '.join(r.split()[1] for r in missing)}")
    if unwanted:
        h.change("\n".join(f"ufw delete {rule} >/dev/null" for rule in unwanted))
        changes.append(f"closed {', '.join(r.split()[1] for r in unwanted)}")
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
