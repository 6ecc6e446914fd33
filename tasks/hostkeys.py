"""Host keys checked like OpenSSH's `StrictHostKeyChecking=accept-new` (or `yes`).

Fabric's Connection accepts any host key and records nothing (fabric/fabric#1804),
so this module loads the user's known_hosts files (ssh_config `UserKnownHostsFile`,
else ~/.ssh/known_hosts) into each connection: a changed key is refused by paramiko
(BadHostKeyException); an unknown key is recorded on first use, or refused in strict mode.
"""

import os
import threading
from pathlib import Path

from paramiko.client import MissingHostKeyPolicy
from paramiko.ssh_exception import SSHException

_write_lock = threading.Lock()


class UnknownHostKey(SSHException):
    def __init__(self, hostname, key, path):
        self.hostname, self.key, self.path = hostname, key, path
        super().__init__(f"unknown host key for {hostname}")


def known_hosts_files(c):
    """The user's known_hosts files (ssh_config `UserKnownHostsFile`); keys are recorded in
    the first."""
    files = c.ssh_config.get("userknownhostsfile") or "~/.ssh/known_hosts"
    return [Path(os.path.expanduser(f)) for f in files.split()]


def global_known_hosts_files(c):
    """The system-wide files (ssh_config `GlobalKnownHostsFile`), read but never written."""
    files = c.ssh_config.get("globalknownhostsfile") or \
        "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"
    return [Path(os.path.expanduser(f)) for f in files.split()]


def strict(c, policy):
    """Refuse unknown hosts: app.host_keys is strict, or ssh_config says
    `StrictHostKeyChecking yes` for this host (as OpenSSH would)."""
    return policy == "strict" or str(c.ssh_config.get("stricthostkeychecking", "")).lower() \
        in ("yes", "true")


class RecordOrRefuse(MissingHostKeyPolicy):
    """Unknown host: record its key in PATH (accept-new), or refuse it (strict)."""

    def __init__(self, path, strict):
        self.path, self.strict = path, strict

    def missing_host_key(self, client, hostname, key):
        if self.strict:
            raise UnknownHostKey(hostname, key, self.path)
        with _write_lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


def secure(c, policy="accept-new"):
    """Make connection C check host keys against known_hosts (the user's and the
    system-wide ones) before it connects."""
    files = known_hosts_files(c)
    for path in [*files, *global_known_hosts_files(c)]:
        if path.exists():
            c.client.load_system_host_keys(str(path))
    c.client.set_missing_host_key_policy(RecordOrRefuse(files[0], strict(c, policy)))
    return c


def where_known(c, hostname):
    """The known_hosts file that holds HOSTNAME's recorded key, for error messages."""
    for path in [*known_hosts_files(c), *global_known_hosts_files(c)]:
        try:
            if any(hostname in line.split(" ", 1)[0].split(",")
                   for line in path.read_text().splitlines()):
                return path
        except OSError:
            continue
    return known_hosts_files(c)[0]
