"""A `Host`: one server's connection, and the dry-run switch: the transport every run uses.

What a run knows and holds on the host (its settings, facts, lock) is the run's
(tasks.run.HostRun), which changes the server through its Host.
"""

import functools
import getpass
import hmac
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from types import SimpleNamespace

import fabric.runners
import paramiko.config
import paramiko.util
from paramiko.ssh_exception import SSHException

from tasks.shell import DeployError, explain_failure, q

# paramiko checks every packet's MAC with a constant-time comparison written in Python, a
# loop over its bytes: a third of a converged run's CPU per host. The standard library's is
# the same comparison, constant-time too, in C.
paramiko.util.constant_time_bytes_eq = hmac.compare_digest
# Each connection's reader thread wakes this often, while it waits for a packet, only to
# ask whether it should stop; at its 0.1 s, fifty idle hosts took 0.2 s of CPU each 10 s.
# A close does not wait for it (it closes the socket), so later costs only timeouts' slack.
paramiko.Transport._active_check_timeout = 1.0
# paramiko asks the system who the local user is for every Host block of ~/.ssh/config it
# reads, and it reads them all for each host: with a block per host, a cost per host that
# grows with the fleet. The local user does not change during a run.
paramiko.config.getpass = SimpleNamespace(getuser=functools.cache(getpass.getuser))


class Remote(fabric.runners.Remote):
    """Fabric's runner, waiting for the command's end on paramiko's own event: Invoke's
    wait wakes every 10 ms to ask, and with fifty hosts waiting at once those wake-ups were
    most of the operator's CPU."""

    def wait(self):
        while not (self.process_is_finished or self.has_dead_threads):
            self.channel.status_event.wait(1)  # and notices a reader thread that died


def own_connect_kwargs(config):
    """The connect_kwargs a new Connection is given: a dict of its own, with the run's
    (passwords, -i keys). Given none, Fabric takes the config's own and writes the host's
    IdentityFile into it (fabric 3.2), so each later host of the run was offered every
    earlier host's keys first, and sshd's MaxAuthTries (6) refused the seventh."""
    return {**config.connect_kwargs, "key_filename": []}


@dataclass
class Host:
    """One server's connection (its commands counted), refusing changes in a dry run."""

    c: object  # fabric.Connection
    dry_run: bool = False
    round_trips: int = 0

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
        self.round_trips += 1
        kwargs = {"hide": True, "warn": True, "in_stream": False, "timeout": timeout, **extra}
        if not sudo or self.as_root:
            return self.c.run(command, **kwargs)
        if self.c.config.sudo.password:
            return self.c.sudo(command, **kwargs)
        return self.c.run(f"sudo -n {command}", **kwargs)

    def script(self, script, sudo=True, **extra):
        """Run a shell script as one remote command; return its Result, whatever its exit."""
        return self.execute(f"sh -c {q(script)}", sudo, **extra)

    def read(self, script, sudo=True, timeout=None, explain=explain_failure):
        """Run a read-only script (allowed in dry-run); return its stdout or raise
        DeployError(EXPLAIN(result))."""
        result = self.script(script, sudo, timeout=timeout)
        if result.exited != 0:
            raise DeployError(explain(result))
        return result.stdout

    def stream(self, script, out):
        """Run a long-lived read-only script, writing its output to OUT as it comes.

        A pty makes the remote command end when the connection is closed (Ctrl-C)."""
        return self.script(script, pty=True, out_stream=out)

    def change(self, script, sudo=True, timeout=None, explain=explain_failure):
        """Run a script that alters the server (stopping at its first failing command)."""
        if self.dry_run:
            raise RuntimeError(f"a change in a dry run: {script.strip().splitlines()[0]}")
        return self.read(f"set -e\n{script}", sudo, timeout, explain)

    def upload(self, content):
        """Copy CONTENT to a fresh temp file on the server (as the SSH user); return its path."""
        if self.dry_run:
            raise RuntimeError("an upload in a dry run")
        data = content.encode() if isinstance(content, str) else content
        tmp = f"/tmp/.fab-{uuid.uuid4().hex}"
        self.round_trips += 1
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


def install_script(tmp, path, owner="root", group="root", mode="0644"):
    """Move the uploaded TMP to PATH atomically (install beside it, then rename)."""
    staged = f"{path}.fab-new"
    return (f"trap 'rm -f {q(tmp)} {q(staged)}' EXIT\n"
            f"install -D -o {q(owner)} -g {q(group)} -m {q(mode)} {q(tmp)} {q(staged)}\n"
            f"mv -f {q(staged)} {q(path)}\n")
