"""Host keys checked like OpenSSH's `StrictHostKeyChecking=accept-new` (or `yes`).

Fabric's Connection accepts any host key and records nothing (fabric/fabric#1804),
so this module gives each connection the keys the user's known_hosts files (ssh_config
`UserKnownHostsFile`, else ~/.ssh/known_hosts, then the system-wide ones) hold for its host:
a changed key is refused by paramiko (BadHostKeyException); an unknown key is recorded on
first use, or refused in strict mode.

Each file is read once per run, not by paramiko's `HostKeys.load` for each connection:
that load checks every line against all the lines before it, so fifty hosts with a
fifty-line file cost a second of CPU, and it grows with the square of the fleet.
"""

import hmac
import os
import threading
from collections import defaultdict
from pathlib import Path

from paramiko.client import MissingHostKeyPolicy
from paramiko.hostkeys import HostKeyEntry, HostKeys, InvalidHostKey
from paramiko.ssh_exception import SSHException

from tasks.once import once

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


class KnownHosts:
    """One known_hosts file's keys, found by name as paramiko finds them: a plain name
    (`host`, or `[host]:port` off port 22), or OpenSSH's hashed form (`|1|salt|hash`).
    Lines paramiko cannot read (markers, unknown key types) are skipped, as it skips them."""

    def __init__(self, path):
        self.by_name, self.hashed = defaultdict(list), []
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        for lineno, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entry = HostKeyEntry.from_line(line, lineno)
            except (SSHException, InvalidHostKey):
                continue
            for name in entry.hostnames if entry else ():
                self.add(name, entry.key)

    def add(self, name, key):
        if name.startswith("|1|"):
            try:
                HostKeys.hash_host("", name)  # its salt is one paramiko can read
            except (AssertionError, ValueError, IndexError):
                return
            self.hashed.append((name, key))
        else:
            self.by_name[name].append(key)

    def keys_of(self, name):
        """The keys recorded for NAME, in the file's order."""
        return self.by_name.get(name, []) + [
            key for hashed, key in self.hashed
            if hmac.compare_digest(HostKeys.hash_host(name, hashed), hashed)]


def known_hosts(path):
    """PATH's KnownHosts, read once per run (a key recorded during it is added to it)."""
    return once(("known_hosts", str(path)), lambda: KnownHosts(path))


def lookup_name(c):
    """The name paramiko looks the host's key up by: `host`, or `[host]:port`."""
    return c.host if int(c.port) == 22 else f"[{c.host}]:{c.port}"


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
            known_hosts(self.path).add(hostname, key)  # a later connection in this run
        client.get_host_keys().add(hostname, key.get_name(), key)


def secure(c, policy="accept-new"):
    """Make connection C check host keys against known_hosts (the user's and the
    system-wide ones) before it connects. The first key of each type found is the one
    checked, and the first type is the one the server is asked for, as paramiko does."""
    files = known_hosts_files(c)
    name, keys = lookup_name(c), c.client.get_host_keys()
    for path in [*files, *global_known_hosts_files(c)]:
        for key in known_hosts(path).keys_of(name):
            if key.get_name() not in (keys.lookup(name) or {}):
                keys.add(name, key.get_name(), key)
    c.client.set_missing_host_key_policy(RecordOrRefuse(files[0], strict(c, policy)))
    return c


def where_known(c, hostname):
    """The known_hosts file that holds HOSTNAME's recorded key, for error messages."""
    return next((path for path in [*known_hosts_files(c), *global_known_hosts_files(c)]
                 if known_hosts(path).keys_of(hostname)), known_hosts_files(c)[0])
