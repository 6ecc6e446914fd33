"""SSH by key only and no root login, without ever locking the operator out (`fab harden`).

Before anything changes, a fresh connection proves that key login as this user and
its sudo work. The drop-in is checked with `sshd -t` and `sshd -T` (the values sshd
will really use) before the reload; a dead-man switch removes it again unless a fresh
key login after the reload proves the way in still works.
"""

from tasks.login import prove_fresh_login
from tasks.output import say, unified_diff
from tasks.plan import Call, Plan, Step
from tasks.shell import DeployError, q
from tasks.templates import render
from tasks.units import transient

DROP_IN = "/etc/ssh/sshd_config.d/00-fab-harden.conf"
DEADMAN = "fab-sshd-revert"
WANTED = {"passwordauthentication": "no", "kbdinteractiveauthentication": "no",
          "permitrootlogin": "no"}
EFFECTIVE = f"sshd -T 2>/dev/null | grep -Ei '^({'|'.join(WANTED)}) '"
# Ubuntu 22.10+ starts sshd from ssh.socket: ssh.service may not be running, and then there
# is nothing to reload (the next connection's sshd reads the new file).
RELOAD = "systemctl try-reload-or-restart ssh"
REVERT = f"rm -f {DROP_IN}; {RELOAD}"


def effective(text):
    """sshd -T lines as {keyword: value}."""
    return dict(line.lower().split(None, 1) for line in text.splitlines() if " " in line)


def apply_script(content, revert_after):
    """Write, check and reload in one script: the dead-man switch is armed before the file
    exists, so a connection lost anywhere after this point still ends with SSH as it was."""
    wanted = " ".join(f"{k} {v}" for k, v in sorted(WANTED.items())) + " "
    return f"""systemctl stop {DEADMAN}.timer >/dev/null 2>&1 || true
{transient(f"sh -c {q(REVERT)}", DEADMAN, on_active=revert_after, collect=False)}
undo() {{ rm -f {DROP_IN}; systemctl stop {DEADMAN}.timer >/dev/null 2>&1 || true; }}
printf %s {q(content)} > {DROP_IN}.fab-new
chmod 0644 {DROP_IN}.fab-new
mv -f {DROP_IN}.fab-new {DROP_IN}
if ! out=$(sshd -t 2>&1); then undo; echo "$out" >&2; exit 1; fi
got=$({EFFECTIVE} | sort | tr '\\n' ' ')
if [ "$got" != {q(wanted)} ]; then
  undo
  echo "another sshd setting wins over {DROP_IN} (sshd -T says: $got); check sshd_config" >&2
  exit 1
fi
{RELOAD}"""


def prove_key_login(h):
    if not prove_fresh_login(h.c, keys_only=True, sudo=True):
        raise DeployError(f"key login as {h.c.user} with sudo failed on a fresh connection, so "
                          f"SSH was left as it is: install your key first (ssh-copy-id "
                          f"{h.c.user}@{h.c.host}) and make sure {h.c.user} may use sudo")


def apply(h, content):
    h.change(apply_script(content, h.settings.firewall_revert_after))
    if not prove_fresh_login(h.c, keys_only=True, sudo=True):
        h.change(f"{REVERT}\nsystemctl stop {DEADMAN}.timer || true")
        raise DeployError("a fresh key login failed after sshd was reloaded, so the change was "
                          "undone; SSH is as it was")
    h.change(f"systemctl stop {DEADMAN}.timer >/dev/null 2>&1 || true")


def plan(in_effect):
    """IN_EFFECT: sshd's effective values ({keyword: value})."""
    if in_effect == WANTED:
        return Plan(ok="password and root login already off")
    content = render("sshd-harden.conf")

    def show(h):
        say(h.name, f"would write {DROP_IN} (root:root 0644) and reload ssh")
        h.show_diff(unified_diff("", content, DROP_IN))
    return Plan([Call("", prove_key_login, read_only=True),
                 Call("password and root login turned off; key login proven",
                      lambda h: apply(h, content), would=show)])


STEP = Step("harden", lambda h: plan(effective(h.read(EFFECTIVE))))
