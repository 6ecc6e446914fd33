"""Turn connection and remote failures into one line a person can act on."""

import errno
import socket

from invoke.exceptions import AuthFailure
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    NoValidConnectionsError,
    SSHException,
)

from tasks.config import ConfigError
from tasks.hostkeys import UnknownHostKey, where_known
from tasks.shell import DeployError


def explain_exception(e, c):
    """One line for E, naming the fix; C is the Connection it happened on."""
    target = f"{c.user}@{c.host}:{c.port}"
    if isinstance(e, (DeployError, ConfigError)):
        return str(e)
    if isinstance(e, AuthFailure):
        return (f"wrong sudo password for {c.user}@{c.host}: "
                "run again with --prompt-for-sudo-password")
    if isinstance(e, BadHostKeyException):
        known = where_known(c, e.hostname)
        return (f"REFUSED: the host key of {e.hostname} changed: it now offers "
                f"{e.key.get_name()} {e.key.fingerprint}, but {known} holds another key for it "
                f"(possible man-in-the-middle). If the server was really re-installed, run "
                f"`ssh-keygen -R {e.hostname} -f {known}` and connect again")
    if isinstance(e, UnknownHostKey):
        return (f"REFUSED: {e.hostname} is not in {e.path} and app.host_keys is strict; "
                f"check its key {e.key.get_name()} {e.key.fingerprint} and add it "
                f"(ssh-keyscan {e.hostname} >> {e.path})")
    if isinstance(e, AuthenticationException):
        return (f"SSH login as {c.user} was refused at {target}: check the user "
                f"(-H user@host) and the key (-i KEY or IdentityFile in ~/.ssh/config)")
    if isinstance(e, NoValidConnectionsError):
        codes = {getattr(err, "errno", None) for err in e.errors.values()}
        if errno.ECONNREFUSED in codes:
            return f"connection refused at {target}: is sshd running and is the port right?"
        return f"cannot reach {target}: check the address and the network"
    if isinstance(e, socket.gaierror):
        return f"unknown host {c.host}: check the name (or add it to ~/.ssh/config)"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"timed out connecting to {target}: check the address, port and firewall"
    if isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"cannot reach {target}: no route to host"
    if isinstance(e, SSHException):
        return f"SSH error with {target}: {e}"
    return f"{type(e).__name__}: {e}"
