"""The deploy lock: one converging run per app and server at a time.

A directory made with `mkdir` (atomic) holding who took it, a random token and the SSH
session that took it; only the holder's token gives it back. It lives in a root-only
directory: in a world-writable one (/run/lock) any local user could squat it, or fill the
holder text the operator reads.

It is taken in the run's first round trip, with the facts. A run that ends having changed
nothing does not spend a round trip giving it back: its SSH session ends, and a lock whose
session process is gone (the same pid with the same start time no longer exists) is taken
over by the next run, silently. A run's first change marks the lock `changing`: taking over
such a lock (fab killed, the connection lost mid-change) is said. A live holder blocks (one
that has not started changing anything is given a moment to finish), and `--break-lock`
stays for the rest (a lock from a session the server cannot see). The work a dead run left
going (tasks.units.detached) is waited for before this run reads the server again.
"""

import getpass
import socket
import time
import uuid
from dataclasses import dataclass, field

from tasks.deploy_log import entry, final_script, first_script, unfinished_script
from tasks.output import say
from tasks.shell import DeployError, q
from tasks.steps import gather
from tasks.units import WORK_DIR, active_units, work_unit

WORK_TIMEOUT = 1800  # longer than any detached work may run


def lock_path(s):
    return f"{WORK_DIR}/{s.name}.lock"


def work_units(s):
    """The app's detached work still running (or stopping): prints one unit per line."""
    return active_units(work_unit(s, "*"))


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


def acquire_script(s, token, who, break_lock=False, then=""):
    """Take the lock (printing `acquired`, after `took-over <old holder>` if a run that had
    begun changing the server was gone), then run THEN; or print `held <who holds it>`; then
    `busy <unit>` for detached work still running. Serialised by flock, so two runs never
    both take over one dead holder. A live holder not yet changing anything gets two seconds
    to end (the run before this one, its SSH session still closing).

    The run's own session is read first: a run whose connection is already gone (fab killed
    as it connected) finds none, prints `no-session` and takes nothing, so no lock is ever
    left that names no session (which only --break-lock could clear)."""
    lock = q(lock_path(s))
    holder_alive = f'alive "$(cat {lock}/session 2>/dev/null)"'
    return (f"install -d -o root -g root -m 0700 {WORK_DIR}\n{SESSION}"
            'me=$(session_of $$)\nif [ -z "$me" ]; then echo no-session; else\n'
            f"exec 9>{WORK_DIR}/.guard; flock -w 30 9\n" +
            ("rm -rf " + lock + "\n" if break_lock else "") +
            f"n=0; while [ -d {lock} ] && [ ! -e {lock}/changing ] && {holder_alive} "
            "&& [ $n -lt 40 ]; do sleep 0.05; n=$((n + 1)); done\n"
            f"if [ -d {lock} ] && ! {holder_alive} && [ -s {lock}/session ]; then\n"
            f"  [ -e {lock}/changing ] && echo \"took-over $(cat {lock}/holder 2>/dev/null)\"\n"
            f"  rm -rf {lock}\n"
            "fi\n"
            f"if mkdir {lock} 2>/dev/null; then\n"
            f"  printf '%s\\n' \"$me\" > {lock}/session\n"
            f"  printf '%s\\n' {q(token)} > {lock}/token\n"
            f"  printf '%s\\n' {q(who)} > {lock}/holder; echo acquired\n"
            f"  {then or 'true'}\n"
            f"else echo \"held $(cat {lock}/holder 2>/dev/null)\"; fi\n"
            f"{work_units(s)} | sed 's/^/busy /'\n"
            "exec 9>&-; fi; true")


def changing_script(s, token):
    """Mark the lock TOKEN holds as changing the server (run with the first change)."""
    lock = q(lock_path(s))
    return f'[ "$(cat {lock}/token 2>/dev/null)" = {q(token)} ] && : > {lock}/changing || true'


def wait_script(s):
    return (f"timeout {WORK_TIMEOUT} sh -c "
            + q(f"while [ -n \"$({work_units(s)})\" ]; do sleep 1; done"))


def release_script(s, token, first=""):
    """Give the lock back if TOKEN still holds it, after running FIRST (while holding it)."""
    lock = q(lock_path(s))
    return (f'if [ "$(cat {lock}/token 2>/dev/null)" = {q(token)} ]; then\n'
            f'  {first or "true"}\n  rm -rf {lock}\nfi; true')


class LockHeld(DeployError):
    """Another live run holds the lock."""


@dataclass
class Hold:
    """A run's hold on its server: the lock's token, the id of the run's line in the deploy
    log, that line as written with the lock, and the script the run's first change runs
    with (marking the lock `changing` and the line `unfinished`; HostRun.change)."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    logged: dict = None
    first_change: str = ""

    def take_first_change(self):
        first, self.first_change = self.first_change, ""
        return first


def lock_and_gather(h, action, break_lock=False):
    """Take the server's deploy lock, log the run and gather the facts, in one round trip;
    fail (LockHeld) naming who holds the lock. Waits for work a dead run left going, and
    gathers again after it. The run's first change marks the lock and the log line
    (Hold.first_change); `finish` settles both."""
    h.hold = hold = Hold()
    who = (f"{getpass.getuser()}@{socket.gethostname()} since "
           f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}")
    lines = gather(h, acquire_script(h.settings, hold.token, who, break_lock,
                                     then=first_script(h, action)))
    said = {line.split(" ", 1)[0]: line.partition(" ")[2] for line in lines}
    if "no-session" in said:
        h.hold = None
        raise DeployError("the server shows no SSH session for this run, so the deploy lock "
                          "was not taken: is its sshd OpenSSH's? (run again)")
    if "acquired" not in said:
        h.hold = None
        raise LockHeld(f"another deploy holds the lock ({said.get('held') or 'unknown'}); "
                       "wait for it, or if it is stale run again with --break-lock")
    hold.logged = entry(h, action)  # the line as written: the facts were read with it
    hold.first_change = changing_script(h.settings, hold.token) + "\n" + unfinished_script(h)
    if "took-over" in said:
        say(h.name, f"{'lock':<11} {'note':<8} took over the lock of a run that is gone "
                    f"({said['took-over'] or 'unknown'}): its SSH session has ended")
    busy = [line.split(" ", 1)[1] for line in lines if line.startswith("busy ")]
    if busy:
        say(h.name, f"{'lock':<11} {'note':<8} waiting for the work an interrupted run left "
                    f"going to finish ({', '.join(busy)})")
        h.read(wait_script(h.settings), timeout=WORK_TIMEOUT + 60)
        gather(h)


def finish(h, action):
    """Settle the run's log line and give the lock back. A run that changed nothing and ended
    as its line says needs neither: its session's end frees the lock."""
    hold = h.hold
    if not hold:
        return
    h.run.entry = entry(h, action)
    try:
        if not (hold.first_change and h.run.entry == hold.logged):
            h.script(release_script(h.settings, hold.token, final_script(h, action)))
    finally:
        h.hold = None
