"""Remote primitives shared by every step: a `Host`, quoting, templates, output.

A `Host` is one server for one run: its connection, settings, facts, the dry-run
switch and the run's result so far. Steps read facts and return plans
(tasks.plan); only the applier and the release switch call `Host.change`.
"""

import difflib
import hashlib
import re
import shlex
import shutil
import sys
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from invoke import Exit
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from paramiko.ssh_exception import SSHException

from tasks.results import Outcome, Run
from tasks.settings import PROJECT, load

_print_lock = threading.Lock()
_templates = Environment(loader=FileSystemLoader(str(PROJECT / "templates")),
                         undefined=StrictUndefined, keep_trailing_newline=True,
                         trim_blocks=True, lstrip_blocks=True)


class DeployError(Exception):
    """A failure worded for people: what went wrong and how to fix it."""


# The server's python3 for fab's own stdlib-only scripts (probes, supervisor's state): no
# site-packages and no PYTHON* variables, and a start 10 ms quicker.
PYTHON = "python3 -I -S"


def q(value):
    """Quote one value for the remote shell: the only way values enter commands."""
    return shlex.quote(str(value))


def render(template, **values):
    """Render templates/<template> strictly: a missing value is an error naming it."""
    return _templates.get_template(template).render(**values)


def sha256(data):
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def unified_diff(old, new, path):
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"{path} (server)", tofile=f"{path} (wanted)")
    return "".join(lines)


# Control characters other than tab, shown escaped: what a server sends (an app's log, a
# page it serves) never moves the operator's cursor, rewrites a line or sets a title.
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(line):
    return CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", line)


def say(host, text, stream=None):
    """Print whole lines, each prefixed with the host, without interleaving threads."""
    stream = stream or sys.stdout
    with _print_lock:
        if _progress and stream.isatty():
            stream.write("\r\033[K")  # the status line goes; the next tick draws it again
        for line in text.rstrip("\n").split("\n"):
            stream.write(f"[{host}] {printable(line)}\n")
        stream.flush()


_progress = {}  # host -> (what it is doing, since when): the terminal's status line


@contextmanager
def progress(host, doing):
    """On a terminal, a status line says what each host is doing and for how many seconds
    (`[web1] app: released ... 12s`), drawn once a second, gone when the work ends. Piped
    output never gets it."""
    if not sys.stdout.isatty():
        yield
        return
    with _print_lock:
        _progress[host] = (doing, time.monotonic())
        first = len(_progress) == 1
    done = threading.Event()
    ticker = threading.Thread(target=_tick, args=(done,), daemon=True) if first else None
    if ticker:
        ticker.start()
    try:
        yield
    finally:
        with _print_lock:
            _progress.pop(host, None)
            if not _progress:
                sys.stdout.write("\r\033[K")
                sys.stdout.flush()
        if ticker:
            done.set()
            ticker.join()


def _tick(done):
    while not done.wait(1):
        with _print_lock:
            now = time.monotonic()
            line = "  ".join(f"[{host}] {doing} {now - since:.0f}s"
                             for host, (doing, since) in sorted(_progress.items()))
            width = shutil.get_terminal_size().columns - 1
            sys.stdout.write("\r\033[K" + line[:width])
            sys.stdout.flush()


@dataclass
class Host:
    """One server for one run: its connection, settings, facts and what the run did there.

    Only the plan applier (tasks.plan) and the switch it runs change the server; in a
    dry run nothing may, and `change` refuses."""

    c: object  # fabric.Connection
    settings: object  # tasks.settings.Settings
    dry_run: bool = False
    facts: object = None  # tasks.facts.Facts, once gathered
    run: Run = None
    hold: object = None  # tasks.lock.Hold, while the run holds the server's deploy lock
    source: object = None  # tasks.steps.app.Source, once resolved
    site_answer: str = ""  # the site's healthy answer through nginx since the last change

    def __post_init__(self):
        self.run = self.run or Run(self.name)

    @property
    def name(self):
        return getattr(self.c, "original_host", None) or self.c.host

    @property
    def as_root(self):
        return self.c.user == "root"

    def connect(self):
        """Open the connection. A server too loaded to greet in time ("Error reading SSH
        protocol banner": nothing has run yet) gets one more try, as OpenSSH users retry."""
        for attempt in (1, 2):
            try:
                return self.c.open()
            except SSHException as e:
                if attempt == 2 or "protocol banner" not in str(e):
                    raise
                time.sleep(1)

    def execute(self, command, sudo, timeout=None, **extra):
        """Run one shell command (through sudo unless connected as root); return Result."""
        if not self.c.is_connected:
            self.connect()
        self.run.round_trips += 1
        kwargs = {"hide": True, "warn": True, "in_stream": False, "timeout": timeout, **extra}
        if not sudo or self.as_root:
            return self.c.run(command, **kwargs)
        if self.c.config.sudo.password:
            return self.c.sudo(command, **kwargs)
        return self.c.run(f"sudo -n {command}", **kwargs)

    def script(self, script, sudo=True, **extra):
        """Run a shell script as one remote command; return its Result, whatever its exit."""
        return self.execute(f"sh -c {q(script)}", sudo, **extra)

    def read(self, script, sudo=True, timeout=None):
        """Run a read-only script (allowed in dry-run); return its stdout or raise."""
        result = self.script(script, sudo, timeout=timeout)
        if result.exited != 0:
            raise DeployError(explain_failure(result))
        return result.stdout

    def stream(self, script, out):
        """Run a long-lived read-only script, writing its output to OUT as it comes.

        A pty makes the remote command end when the connection is closed (Ctrl-C)."""
        return self.script(script, pty=True, out_stream=out)

    def change(self, script, sudo=True, timeout=None, serving_unchanged=False):
        """Run a script that alters the server (stopping at its first failing command).
        SERVING_UNCHANGED: it cannot change what the site serves (old releases pruned, a
        candidate stopped), so the site's last healthy answer still stands."""
        if self.dry_run:
            raise RuntimeError(f"a change in a dry run: {script.strip().splitlines()[0]}")
        first = self.hold.take_first_change() if self.hold else ""
        if not serving_unchanged:
            self.site_answer = ""
        return self.read(f"set -e\n{first}\n{script}", sudo, timeout)

    def put(self, content, path, owner="root", group="root", mode="0644"):
        """Write a file atomically (temp upload, install beside, rename) with owner and mode;
        missing parent directories are created (root, 0755).

        Example: `h.put(conf, "/etc/supervisor/conf.d/shop.conf")`"""
        self.change(install_script(self.upload(content), path, owner, group, mode))

    def upload(self, content):
        """Copy CONTENT to a fresh temp file on the server (as the SSH user); return its path."""
        if self.dry_run:
            raise RuntimeError("an upload in a dry run")
        data = content.encode() if isinstance(content, str) else content
        tmp = f"/tmp/.fab-{uuid.uuid4().hex}"
        self.run.round_trips += 1
        sftp = self.c.sftp()
        try:
            with sftp.open(tmp, "wxb") as f:  # exclusive create: never follow a planted link
                f.chmod(0o600)  # before the first byte: a secret never sits readable in /tmp
                f.write(data)
        except OSError as e:
            with suppress(OSError):
                sftp.remove(tmp)
            raise DeployError(f"could not upload {len(data) // 1024} KB to the server's /tmp "
                              f"({e.strerror or e}): is its disk full? (df -h /tmp)") from None
        return tmp

    def record(self, step, status, message="", seconds=None):
        """Keep a step's outcome and print its line: `[host] step  status  message`, and how
        long it took when that was a tenth of a second or more."""
        self.run.outcomes.append(Outcome(step, status, message, seconds))
        took = f"  ({seconds:.1f} s)" if seconds is not None and seconds >= 0.1 else ""
        say(self.name, f"{step:<11} {status:<8} {message}".rstrip() + took)

    def show_diff(self, diff):
        if diff:
            say(self.name, "\n".join("    " + line for line in diff.rstrip("\n").split("\n")))


def open_host(c, dry_run=False):
    """The Host of connection C, with its validated settings."""
    if not hasattr(c, "host"):
        raise Exit("no host given: run it as `fab -H user@server TASK`", code=2)
    from tasks.roles import for_host  # roles resolves hosts with Fabric's ssh_config
    return Host(c, for_host(load(c.config), c.config, c.original_host), dry_run)


def install_script(tmp, path, owner="root", group="root", mode="0644"):
    """Move the uploaded TMP to PATH atomically (install beside it, then rename)."""
    staged = f"{path}.fab-new"
    return (f"trap 'rm -f {q(tmp)} {q(staged)}' EXIT\n"
            f"install -D -o {q(owner)} -g {q(group)} -m {q(mode)} {q(tmp)} {q(staged)}\n"
            f"mv -f {q(staged)} {q(path)}\n")


def for_systemd(text):
    """TEXT as a word of a systemd-run command line: systemd expands $NAME and ${NAME} there
    (a script's ${1:-x} would reach the shell mangled), and $$ is its literal $."""
    return text.replace("$", "$$")


WORK_DIR = "/run/fab"  # root-only: the deploy lock, and the output of detached work


def work_unit(s, what):
    """The name (before its fresh suffix) of the unit of the app's detached WHAT: apt,
    build or release. The dot keeps one app's pattern from matching another's units (app
    names have no dots)."""
    return f"fab-{s.name}.{what}"


def active_units(pattern):
    """Prints the systemd units matching PATTERN still running (or stopping), one a line."""
    return ("systemctl list-units --plain --no-legend --state=active,activating,deactivating "
            f"{q(pattern)} 2>/dev/null | cut -d' ' -f1")


def detached(unit, script, timeout):
    """A command that runs SCRIPT (as root) in a transient systemd service named UNIT plus a
    fresh suffix, waits for it and exits with its status, its output on stdout (on stderr if
    it failed).

    The service is the server's, not the SSH session's: when the connection drops (a
    laptop lid, a killed fab, a lost network), the work goes on to its end instead of dying
    half-done; the next run waits for it (tasks.lock) before it looks at the server again.
    A fresh name per run: a finished unit can stay loaded a moment, and starting one of
    the same name then fails."""
    unit = f"{unit}-{uuid.uuid4().hex[:8]}"
    log = f"{WORK_DIR}/{unit}.log"
    return (f"install -d -o root -g root -m 0700 {WORK_DIR}\n"
            f"rc=0; systemd-run --quiet --wait --collect --unit={q(unit)} "
            f"--description={q(unit + ' (detached work of fab)')} "
            f"-p RuntimeMaxSec={timeout} -p StandardOutput=truncate:{log} "
            f"-p StandardError=inherit sh -c {q(for_systemd(script))} || rc=$?\n"
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
            f"systemd-run --quiet --collect --unit={q(f'{unit}-{uuid.uuid4().hex[:8]}')} "
            f"--description={q(unit + ' (background work of fab)')} "
            f"-p RuntimeMaxSec={timeout} sh -c {q(for_systemd(recording(script, result)))}\n")


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


class LinePrefixer:
    """A file-like sink that prints each complete line prefixed with the host."""

    def __init__(self, host):
        self.host, self.buffer = host, ""

    def write(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            say(self.host, line.rstrip("\r"))

    def flush(self):
        pass


NOISE = ("note:", "hint:", "╰", "│", "×", "[end of output]")


def explain_failure(result):
    """One line from a failed command: sudo problems get their fix, others their stderr."""
    err = (result.stderr or "").strip()
    if "a password is required" in err or "a terminal is required" in err:
        return "sudo needs a password: run with --prompt-for-sudo-password (or set sudo.password)"
    if "incorrect password" in err or "Sorry, try again" in err:
        return "wrong sudo password: check it and run again with --prompt-for-sudo-password"
    if "is not in the sudoers file" in err or "not allowed to execute" in err:
        return "this user may not use sudo: connect as root or add the user to the sudo group"
    lines = [line.strip() for line in (err or result.stdout or "").splitlines()
             if line.strip() and not line.strip().startswith(NOISE)]
    # pip ends with generic lines ("error: subprocess-exited-with-error"); the cause is above.
    errors = [line for line in lines if line.lower().startswith(("error", "fatal", "e:"))
              and "subprocess-exited-with-error" not in line]
    if errors:
        return errors[-1]
    return lines[-1] if lines else f"command failed with exit code {result.exited}"
