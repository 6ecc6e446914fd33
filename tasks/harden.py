"""`fab harden`: SSH by key only and no root login, without ever locking the operator out.

Before anything changes, a fresh connection proves that key login as this user and
its sudo work. The drop-in is checked with `sshd -t` and `sshd -T` (the values sshd
will really use) before the reload; a dead-man switch removes it again unless a fresh
key login after the reload proves the way in still works.
"""

from invoke import task

from tasks.core import (
    CHANGED,
    OK,
    DeployError,
    Host,
    StepFailed,
    q,
    render,
    run_step,
    say,
    unified_diff,
)
from tasks.firewall import prove_fresh_login
from tasks.settings import for_host

DROP_IN = "/etc/ssh/sshd_config.d/00-fab-harden.conf"
DEADMAN = "fab-sshd-revert"
WANTED = {"passwordauthentication": "no", "kbdinteractiveauthentication": "no",
          "permitrootlogin": "no"}
EFFECTIVE = f"sshd -T 2>/dev/null | grep -Ei '^({'|'.join(WANTED)}) '"


def effective(text):
    """sshd -T lines as {keyword: value}."""
    return dict(line.lower().split(None, 1) for line in text.splitlines() if " " in line)


def converge(h):
    if effective(h.read(EFFECTIVE)) == WANTED:
        return OK, ""
    if not prove_fresh_login(h.c, keys_only=True, sudo=True):
        raise DeployError(f"key login as {h.c.user} with sudo failed on a fresh connection, so "
                          f"SSH was left as it is: install your key first (ssh-copy-id "
                          f"{h.c.user}@{h.c.host}) and make sure {h.c.user} may use sudo")
    content = render("sshd-harden.conf")
    if h.dry_run:
        say(h.name, f"would write {DROP_IN} (root:root 0644) and reload ssh")
        h.show_diff(unified_diff("", content, DROP_IN))
    revert = f"rm -f {DROP_IN}; systemctl reload ssh"
    # One script: the dead-man switch is armed before the file exists, so a connection lost
    # anywhere after this point still ends with SSH as it was.
    h.change(f"""systemctl stop {DEADMAN}.timer >/dev/null 2>&1 || true
systemd-run --quiet --unit={DEADMAN} --on-active={h.settings.firewall_revert_after} \\
  sh -c {q(revert)}
undo() {{ rm -f {DROP_IN}; systemctl stop {DEADMAN}.timer >/dev/null 2>&1 || true; }}
printf %s {q(content)} > {DROP_IN}.fab-new
chmod 0644 {DROP_IN}.fab-new
mv -f {DROP_IN}.fab-new {DROP_IN}
if ! out=$(sshd -t 2>&1); then undo; echo "$out" >&2; exit 1; fi
got=$({EFFECTIVE} | sort | tr '\\n' ' ')
if [ "$got" != {q(" ".join(f"{k} {v}" for k, v in sorted(WANTED.items())) + " ")} ]; then
  undo
  echo "another sshd setting wins over {DROP_IN} (sshd -T says: $got); check sshd_config" >&2
  exit 1
fi
systemctl reload ssh""")
    if not h.dry_run and not prove_fresh_login(h.c, keys_only=True, sudo=True):
        h.change(f"{revert}\nsystemctl stop {DEADMAN}.timer || true")
        raise DeployError("a fresh key login failed after sshd was reloaded, so the change was "
                          "undone; SSH is as it was")
    h.change(f"systemctl stop {DEADMAN}.timer >/dev/null 2>&1 || true")
    return CHANGED, "password and root login turned off; key login proven"


@task(help={"dry-run": "show what would change, running only read-only commands"})
def harden(c, dry_run=False):
    """Turn off SSH password and root login, once key login and sudo are proven to work."""
    if c.user == "root":
        raise DeployError("connect as the sudo user who keeps access (fab -H tom@host harden): "
                          "root login is what this turns off")
    h = Host(c, for_host(c.config, c.user), dry_run)
    try:
        run_step(h, "harden", converge)
    except StepFailed:
        pass
    return h
