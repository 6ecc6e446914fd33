"""Proof that the way in still works: a brand-new SSH connection, made after a change that
could lock the operator out (ufw enabled, sshd hardened) and before it is kept."""

import time

from fabric import Connection
from paramiko.ssh_exception import AuthenticationException

from tasks.config import raw
from tasks.host import own_connect_kwargs
from tasks.hostkeys import secure


def prove_fresh_login(c, keys_only=False, sudo=False, tries=5):
    """Open a brand-new SSH connection with the same settings and run a command.

    KEYS_ONLY leaves out any login password; SUDO also proves sudo works there. A refused
    or dropped connection is tried again (sshd re-executes itself on reload), a refused
    login is not."""
    connect_kwargs = {k: v for k, v in own_connect_kwargs(c.config).items()
                      if not (keys_only and k == "password")}
    kwargs = {"hide": True, "warn": True, "timeout": 15, "in_stream": False}
    for attempt in range(tries):
        fresh = secure(Connection(c.original_host, user=c.user, port=c.port, config=c.config,
                                  connect_kwargs=connect_kwargs, connect_timeout=10),
                       raw(c.config)["host_keys"])
        try:
            if sudo and c.config.sudo.password:
                return fresh.sudo("true", **kwargs).ok
            return fresh.run("sudo -n true" if sudo else "true", **kwargs).ok
        except AuthenticationException:
            return False
        except Exception:
            time.sleep(1 + attempt)
        finally:
            fresh.close()
    return False
