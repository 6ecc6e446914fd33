"""The deploy lock: one converging run per app and server at a time.

A directory made with `mkdir` (atomic) holding who took it and a random token; only
the holder's token gives it back. It lives in a root-only directory: in a world-writable
one (/run/lock) any local user could squat it, or fill the holder text the operator reads.
"""

import getpass
import socket
import time
import uuid

from tasks.core import DeployError, q

LOCK_DIR = "/run/fab"


def lock_path(s):
    return f"{LOCK_DIR}/{s.name}.lock"


def acquire_script(s, token, who, break_lock=False):
    """Take the lock (printing `acquired`), or print `held <who holds it>`."""
    lock = q(lock_path(s))
    return (f"install -d -o root -g root -m 0700 {LOCK_DIR}\n" +
            ("rm -rf " + lock + "\n" if break_lock else "") +
            f"if mkdir {lock} 2>/dev/null; then\n"
            f"  printf '%s\\n' {q(token)} > {lock}/token\n"
            f"  printf '%s\\n' {q(who)} > {lock}/holder; echo acquired\n"
            f"else echo \"held $(cat {lock}/holder 2>/dev/null)\"; fi")


def release_script(s, token):
    """Give the lock back if TOKEN still holds it."""
    lock = q(lock_path(s))
    return f'[ "$(cat {lock}/token 2>/dev/null)" = {q(token)} ] && rm -rf {lock}; true'


def acquire_lock(h, break_lock=False):
    """Take the server's deploy lock, or fail at once naming who holds it."""
    token = uuid.uuid4().hex
    who = (f"{getpass.getuser()}@{socket.gethostname()} since "
           f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}")
    out = h.read(acquire_script(h.settings, token, who, break_lock))
    if out.startswith("acquired"):
        h.lock_token = token
    else:
        holder = out.strip()[5:] or "unknown"
        raise DeployError(f"another deploy holds the lock ({holder}); "
                          "wait for it, or if it is stale run again with --break-lock")


def release_lock(h):
    """Give the lock back, only if it is still ours."""
    if h.lock_token:
        h.script(release_script(h.settings, h.lock_token))
        h.lock_token = None
