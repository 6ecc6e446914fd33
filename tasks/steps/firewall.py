"""Step 6: ufw with only what must be open, without ever locking the operator out."""

from tasks.declared import Needs
from tasks.login import prove_fresh_login
from tasks.plan import Call, Command, Plan, Step
from tasks.shell import DeployError, q
from tasks.units import transient

DEADMAN = "fab-ufw-revert"

HTTPS = "allow 443/tcp"


def needs(s):
    return Needs(packages=("ufw",), services=("ufw",))


def wanted_rules(s, facts):
    """The allow rules, SSH first (the port this very connection came in on), then the
    ports the stack's steps open (`Needs.ports`): a web host behind balancers takes HTTP
    from them only; the database host takes its ports from the app hosts only; a worker
    host takes nothing but SSH."""
    return [f"allow {facts.ssh_port}/tcp",
            *(f"allow {port} from {addr}" if sources else f"allow {port}"
              for port, sources in facts.needs.ports for addr in (sources or [None]))]


def ufw_args(rule):
    """`allow 80/tcp from 10.0.0.2` -> ufw's own words for it."""
    action, port, *source = rule.split()
    if not source:
        return rule
    number, proto = port.split("/")
    return f"{action} from {source[1]} to any port {number} proto {proto}"


def rule_changes(s, facts):
    """(rules to add, rules to delete, whether to enable ufw). HTTPS is closed only when no
    other app's site on the server still listens on 443."""
    wanted = wanted_rules(s, facts)
    missing = [rule for rule in wanted if rule not in facts.ufw_rules]
    unwanted = [HTTPS] if HTTPS in facts.ufw_rules and HTTPS not in wanted \
        and not facts.other_tls_sites else []
    # A port open to some hosts only is open to them only: HTTP from anywhere no longer
    # (behind balancers), a database port open to a host no longer an app's.
    ours = {port for port, sources in facts.needs.ports if sources}
    unwanted += [rule for rule in facts.ufw_rules
                 if rule.split()[1] in ours and rule.startswith("allow ") and rule not in wanted]
    return missing, unwanted, not facts.ufw_active


def enable_script(s):
    """Enable ufw behind a dead-man switch that turns it off again unless cancelled."""
    return (f"systemctl stop {DEADMAN}.timer >/dev/null 2>&1 || true\n"
            + transient("/usr/sbin/ufw --force disable", DEADMAN,
                        on_active=s.firewall_revert_after, collect=False) + "\n"
            "ufw --force enable >/dev/null")


def enable(h):
    """Enable ufw, then prove a fresh SSH login works before cancelling the dead-man switch."""
    h.change(enable_script(h.settings))
    if not prove_fresh_login(h.c):
        h.change(f"ufw --force disable >/dev/null; systemctl stop {DEADMAN}.timer || true")
        raise DeployError(f"a fresh SSH connection failed after enabling ufw, so it was "
                          f"turned off again; check that port {h.facts.ssh_port} is reachable")
    h.change(f"systemctl stop {q(DEADMAN)}.timer >/dev/null 2>&1 || true")


def plan(s, facts):
    """The missing allow rules (SSH first), HTTPS closed when TLS is off, ufw on and at boot."""
    missing, unwanted, off = rule_changes(s, facts)
    changes = []
    if missing:
        changes.append(Command(f"allowed {', '.join(r.split(None, 1)[1] for r in missing)}",
                               "\n".join(f"ufw {ufw_args(r)} >/dev/null" for r in missing)))
    if unwanted:
        changes.append(Command(f"closed {', '.join(r.split(None, 1)[1] for r in unwanted)}",
                               "\n".join(f"ufw delete {ufw_args(r)} >/dev/null"
                                         for r in unwanted)))
    if off:
        changes.append(Call("enabled ufw", enable, "enable ufw, proving SSH still works"))
    if facts.service("ufw").enabled != "enabled":
        changes.append(Command("enabled ufw at boot", "systemctl enable ufw >/dev/null 2>&1"))
    wanted = wanted_rules(s, facts)
    return Plan(changes, ok=f"ufw active, {len(wanted)} rules present "
                            f"({', '.join(r.split(None, 1)[1] for r in wanted)})")


STEP = Step("firewall", lambda h: plan(h.settings, h.facts),
            "Allow SSH and HTTP (a database host: its ports to the app hosts) in ufw and "
            "enable it, proving SSH still works.")
