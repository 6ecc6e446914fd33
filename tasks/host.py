"""A `Host`: one server for one run, its connection and the dry-run switch.

Steps read facts and return plans (tasks.plan); only the applier and the release switch
call `Host.change`.
"""

import time
import uuid
from contextlib import suppress
from dataclasses import dataclass

from paramiko.ssh_exception import SSHException

from tasks.output import say
from tasks.results import Outcome, Run
from tasks.shell import DeployError, explain_failure, q


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
    source: object = None  # tasks.source.Source, once resolved
    site_answer: str = ""  # the site's healthy answer through nginx since the last change
    release_phase_done: bool = False  # its batch's release command ran on the first host

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


def install_script(tmp, path, owner="root", group="root", mode="0644"):
    """Move the uploaded TMP to PATH atomically (install beside it, then rename)."""
    staged = f"{path}.fab-new"
    return (f"trap 'rm -f {q(tmp)} {q(staged)}' EXIT\n"
            f"install -D -o {q(owner)} -g {q(group)} -m {q(mode)} {q(tmp)} {q(staged)}\n"
            f"mv -f {q(staged)} {q(path)}\n")


