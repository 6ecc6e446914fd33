"""The exact shapes of the names fab gives things on a server, and the bare name of a host.

What a server prints can be shaped by the app, its build or another local account, so
a name read back is acted on (removed, stopped, linked) only when it has exactly the
shape fab made it with; anything else is reported and left alone.
"""

import re

RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")  # <UTC time>-<hash>; an ERE too
VENV_HASH = re.compile(r"[0-9a-f]{16}")  # venvs/<requirements hash>
# Only these characters ever reach fab's parsers as a listed name (shell `case`, below).
SAFE_NAME = "[A-Za-z0-9._@-]"


def candidate_unit(name):
    """The shape of app NAME's candidate units: `<name>-candidate-<8 hex>.service`."""
    return re.compile(rf"{re.escape(name)}-candidate-[0-9a-f]{{8}}\.service")


def listed(variable):
    """Shell printing $VARIABLE when it holds only SAFE_NAME characters, else `?unsafe`:
    a name with a newline (or anything stranger) never reaches a parser as two names."""
    return (f'case "${variable}" in *[!{SAFE_NAME[1:-1]}]*) echo "?unsafe";; '
            f'*) echo "${variable}";; esac')


def bare(host):
    """HOST without its user@ and :port, as Fabric's original_host has it."""
    return host.rpartition("@")[2].partition(":")[0]
