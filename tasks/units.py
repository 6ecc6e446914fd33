"""Transient systemd units: work that runs on the server, not in the SSH session.

One builder (`transient`) writes every `systemd-run` command line fab sends; `detached`
and `in_background` are the two ways fab's own root work runs in one.
"""

import uuid

from tasks.shell import for_systemd, q

WORK_DIR = "/run/fab"  # root-only: the deploy lock, and the output of detached work
UNIT_DIR = "/etc/systemd/system"  # fab's own timers and their services (jobs, backups)


def work_unit(s, what):
    """The name (before its fresh suffix) of the unit of the app's detached WHAT: apt,
    build or release. The dot keeps one app's pattern from matching another's units (app
    names have no dots)."""
    return f"fab-{s.name}.{what}"


def active_units(pattern):
    """Prints the systemd units matching PATTERN still running (or stopping), one a line."""
    return ("systemctl list-units --plain --no-legend --state=active,activating,deactivating "
            f"{q(pattern)} 2>/dev/null | cut -d' ' -f1")


def calendar_check(when, setting):
    """Shell: stop, naming SETTING, unless systemd reads a calendar in WHEN."""
    return (f"systemd-analyze calendar {q(when)} >/dev/null 2>&1 || {{ echo "
            f"{q(f'{setting}: systemd reads no calendar in it')} >&2; exit 1; }}")


def timers_started(timers):
    """Shell: systemd reads the unit files again and TIMERS run, now and at boot."""
    return ("systemctl daemon-reload\n"
            f"systemctl enable --now {' '.join(q(t) for t in timers)} >/dev/null 2>&1")


def units_removed(stopped, paths):
    """Shell lines: the STOPPED units disabled and stopped, the files at PATHS removed,
    systemd told."""
    return [*([f"systemctl disable --now {' '.join(q(u) for u in stopped)} >/dev/null 2>&1 "
               "|| true"] if stopped else []),
            f"rm -f {' '.join(q(p) for p in paths)}", "systemctl daemon-reload"]


def transient(command, unit=None, *, wait=False, io=None, user=None, cwd=None,
              properties=(), env=(), on_active=None, description=None, collect=True):
    """The `systemd-run` command line that runs COMMAND (shell words) in a transient unit.

    UNIT and USER are quoted here; CWD, PROPERTIES (`Name=value`) and ENV (`NAME=value`)
    are shell words as given (they may hold a "$release" the script sets). WAIT: until it
    ends, with its exit status; IO: "pipe" (stdin and stdout the caller's) or "pty";
    USER: its uid and gid; ON_ACTIVE: a timer that starts it after so many seconds;
    COLLECT: unloaded once it ends, even failed (a timer's unit stays to be stopped)."""
    words = ["systemd-run --quiet"]
    words += ["--wait"] if wait else []
    words += [f"--{io}"] if io else []
    words += ["--collect"] if collect else []
    words += [f"--unit={q(unit)}"] if unit else []
    words += [f"--description={q(description)}"] if description else []
    words += [f"--uid={q(user)} --gid={q(user)}"] if user else []
    words += [f"--working-directory={cwd}"] if cwd else []
    words += [f"--on-active={on_active}"] if on_active else []
    words += [f"-p {p}" for p in properties] + [f"--setenv={e}" for e in env]
    return " ".join([*words, command])


def sh(script):
    """SCRIPT as the command of a transient unit: a shell, with systemd's $ escaped."""
    return f"sh -c {q(for_systemd(script))}"


def fresh(unit):
    """UNIT with a fresh suffix: a finished unit can stay loaded a moment, and starting one
    of the same name then fails."""
    return f"{unit}-{uuid.uuid4().hex[:8]}"


def detached(unit, script, timeout):
    """A command that runs SCRIPT (as root) in a transient systemd service named UNIT plus a
    fresh suffix, waits for it and exits with its status, its output on stdout (on stderr if
    it failed).

    The service is the server's, not the SSH session's: when the connection drops (a
    laptop lid, a killed fab, a lost network), the work goes on to its end instead of dying
    half-done; the next run waits for it (tasks.lock) before it looks at the server again."""
    unit = fresh(unit)
    log = f"{WORK_DIR}/{unit}.log"
    return (f"install -d -o root -g root -m 0700 {WORK_DIR}\n"
            "rc=0; " + transient(sh(script), unit, wait=True,
                                 description=f"{unit} (detached work of fab)",
                                 properties=(f"RuntimeMaxSec={timeout}",
                                             f"StandardOutput=truncate:{log}",
                                             "StandardError=inherit")) + " || rc=$?\n"
            f"if [ $rc = 0 ]; then cat {log}; elif [ -f {log} ]; then cat {log} >&2; fi\n"
            f"rm -f {log}; exit $rc\n")


def result_file(unit):
    """Where work started `in_background` as UNIT leaves its exit status and output."""
    return f"{WORK_DIR}/{unit}.result"


def in_background(unit, script, timeout):
    """A command that starts SCRIPT (as root) in a transient systemd service named UNIT plus
    a fresh suffix and returns at once: work that goes on beside the next steps. When
    SCRIPT ends, `result_file(UNIT)` holds its exit status, then its output; `awaited`
    collects it."""
    result = result_file(unit)
    # .out exists from now on: the facts read next see the work before its shell starts.
    return (f"install -d -o root -g root -m 0700 {WORK_DIR}\nrm -f {result}\n"
            f": > {result}.out\n"
            + transient(sh(recording(script, result)), fresh(unit),
                        description=f"{unit} (background work of fab)",
                        properties=(f"RuntimeMaxSec={timeout}",)) + "\n")


def recording(script, result):
    """SCRIPT, leaving in RESULT its exit status, then its output (RESULT.out meanwhile)."""
    return (f"({script}\n) > {result}.out 2>&1; echo $? > {result}.new\n"
            f"cat {result}.out >> {result}.new; rm -f {result}.out; mv {result}.new {result}")


def awaited(unit, timeout):
    """A command that waits (up to TIMEOUT seconds) for the work started `in_background` as
    UNIT, then exits with its status, its output on stdout (on stderr if it failed)."""
    result = result_file(unit)
    # The result file is looked for often (a test), the unit asked after every 2 s (systemctl
    # costs CPU that ten servers on two cores feel), to stop waiting for one that was killed.
    wait = (f'n=0; until [ -e {result} ]; do sleep 0.1; n=$((n + 1)); [ $((n % 20)) != 0 ] || '
            f'[ -n "$({active_units(unit + "-*")})" ] || break; done')
    return (f"timeout {timeout} sh -c {q(wait)} "
            f"|| {{ echo 'fab: {unit} still runs after {timeout} s' >&2; exit 1; }}\n"
            f"[ -f {result} ] || {{ rm -f {result}.out; echo 'fab: {unit} ended without a "
            "result (it was stopped; "
            f"see journalctl -u \"{unit}-*\")' >&2; exit 1; }}\n"
            f"rc=$(head -n1 {result}); out=$(tail -n +2 {result}); rm -f {result}\n"
            "if [ \"$rc\" = 0 ]; then printf '%s\\n' \"$out\"; "
            "else printf '%s\\n' \"$out\" >&2; exit 1; fi\n")
