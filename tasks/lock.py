"""The deploy lock: one converging run per app and server at a time.

A directory made with `mkdir` (atomic) holding who took it, a random token and the SSH
session that took it; only the holder's token gives it back. It lives in a root-only
directory: in a world-writable one (/run/lock) any local user could squat it, or fill the
holder text the operator reads.

A run can die holding it (fab killed, the connection lost). Its SSH session then ends
on the server, so a lock whose session process is gone (the same pid with the same start
time no longer exists) is taken over, with a notice; a live holder still blocks, and
`--break-lock` stays for the rest (a lock from a session the server cannot see). The work
a dead run left going (tasks.core.detached) is waited for before this run reads the
server again.
"""

import getpass
import socket
import time
import uuid

from tasks.core import WORK_DIR, DeployError, q, say

WORK_TIMEOUT = 1800  # longer than any detached work may run


def lock_path(s):
    return f"{WORK_DIR}/{s.name}.lock"


def work_unit(s, what):
    """The name (before its fresh suffix) of the unit of the app's detached WHAT: apt,
    build or release. The dot keeps one app's pattern from matching another's units (app
    names have no dots)."""
    return f"fab-{s.name}.{what}"


def work_units(s):
    """The app's detached work still running (or stopping): prints one unit per line."""
    return ("systemctl list-units --plain --no-legend --state=active,activating,deactivating "
            f"{q(work_unit(s, '*'))} 2>/dev/null | cut -d' ' -f1")


# This command's SSH session, as "pid:start time" of the nearest sshd ancestor (sshd-session
# since OpenSSH 9.8): the per-connection process that ends when the connection does.
SESSION = r"""stat_of() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null; }
session_of() {
  p=$1
  while [ "${p:-0}" -gt 1 ]; do
    case "$(cat /proc/$p/comm 2>/dev/null)" in
      sshd|sshd-session) echo "$p:$(stat_of $p | cut -d' ' -f20)"; return;;
    esac
    p=$(stat_of $p | cut -d' ' -f2)
  done
}
alive() { [ -n "$1" ] && [ "$(stat_of "${1%%:*}" | cut -d' ' -f20)" = "${1#*:}" ]; }
"""


def acquire_script(s, token, who, break_lock=False):
    """Take the lock (printing `acquired`, after `took-over <old holder>` if its run was
    gone), or print `held <who holds it>`; then `busy <unit>` for detached work still
    running. Serialised by flock, so two runs never both take over one dead holder."""
    lock = q(lock_path(s))
    return (f"install -d -o root -g root -m 0700 {WORK_DIR}\n{SESSION}"
            f"exec 9>{WORK_DIR}/.guard; flock -w 30 9\n" +
            ("rm -rf " + lock + "\n" if break_lock else "") +
            f"if [ -d {lock} ] && ! alive \"$(cat {lock}/session 2>/dev/null)\" "
            f"&& [ -s {lock}/session ]; then\n"
            f"  echo \"took-over $(cat {lock}/holder 2>/dev/null)\"; rm -rf {lock}\n"
            "fi\n"
            f"if mkdir {lock} 2>/dev/null; then\n"
            f"  printf '%s\\n' {q(token)} > {lock}/token\n"
            f"  printf '%s\\n' {q(who)} > {lock}/holder\n"
            f"  session_of $$ > {lock}/session; echo acquired\n"
            f"else echo \"held $(cat {lock}/holder 2>/dev/null)\"; fi\n"
            f"{work_units(s)} | sed 's/^/busy /'\n"
            "true")


def wait_script(s):
    return (f"timeout {WORK_TIMEOUT} sh -c "
            + q(f"while [ -n \"$({work_units(s)})\" ]; do sleep 1; done"))


def release_script(s, token, first=""):
    """Give the lock back if TOKEN still holds it, after running FIRST (while holding it)."""
    lock = q(lock_path(s))
    return (f'if [ "$(cat {lock}/token 2>/dev/null)" = {q(token)} ]; then\n'
            f'  {first or "true"}\n  rm -rf {lock}\nfi; true')


def acquire_lock(h, break_lock=False):
    """Take the server's deploy lock, or fail at once naming who holds it. Returns whether
    it waited for work a dead run left going (the server may have changed since the facts)."""
    token = uuid.uuid4().hex
    who = (f"{getpass.getuser()}@{socket.gethostname()} since "
           f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}")
    lines = h.read(acquire_script(h.settings, token, who, break_lock)).splitlines()
    said = {line.split(" ", 1)[0]: line.partition(" ")[2] for line in lines}
    if "acquired" not in said:
        raise DeployError(f"another deploy holds the lock ({said.get('held') or 'unknown'}); "
                          "wait for it, or if it is stale run again with --break-lock")
    h.lock_token = token
    if "took-over" in said:
        say(h.name, f"{'lock':<11} {'note':<8} took over the lock of a run that is gone "
                    f"({said['took-over'] or 'unknown'}): its SSH session has ended")
    busy = [line.split(" ", 1)[1] for line in lines if line.startswith("busy ")]
    if busy:
        say(h.name, f"{'lock':<11} {'note':<8} waiting for the work an interrupted run left "
                    f"going to finish ({', '.join(busy)})")
        h.read(wait_script(h.settings), timeout=WORK_TIMEOUT + 60)
    return bool(busy)


def release_lock(h, first=""):
    """Give the lock back, only if it is still ours (after the script FIRST, if given)."""
    if h.lock_token:
        h.script(release_script(h.settings, h.lock_token, first))
        h.lock_token = None
