"""Reading a server: the shapes of what fab reads (files, accounts, services, programs),
the parsers that turn a fact's lines into them, and `fact()`, which declares a field of
`tasks.facts.Facts` with its shell and its parser. Parsers take what the server printed
and keep only what has the exact shape they expect."""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tasks.shell import q

ANYWHERE = ("0.0.0.0/0", "::/0")
STATE_RE = re.compile(r"-|[A-Z]{1,16}")  # supervisor's state names, "-" when not loaded


class FileFact(NamedTuple):
    sha256: str
    owner: str
    group: str
    mode: str


class Account(NamedTuple):
    comment: str
    home: str
    shell: str


class Ownership(NamedTuple):
    owner: str
    group: str
    mode: str  # octal, as stat prints it: "755"


class Disk(NamedTuple):
    size_kb: int
    free_kb: int


class Service(NamedTuple):
    enabled: str  # systemctl is-enabled: enabled, disabled, masked, missing
    active: str  # systemctl is-active: active, inactive, failed


class Program(NamedTuple):
    state: str  # supervisor's state name: RUNNING, STARTING, FATAL... ("" if unknown)
    pid: int
    release: str = ""  # the folder it runs in (its cwd): the release it really serves


def quoted(paths):
    return " ".join(q(p) for p in paths)


# supervisorctl (and ufw) are Python programs that take a quarter of a second to start;
# asking supervisord over its socket and reading ufw's own files keeps facts fast. A
# program's cwd is the release it was started in (`current` resolved at its start): after
# an interrupted switch it can differ from what `current` points to now.
SUPERVISOR_SOCKET = "/var/run/supervisor.sock"
SUPERVISOR_RPC = f"""\
import http.client, json, os, socket, sys, xmlrpc.client
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("{SUPERVISOR_SOCKET}")
class Transport(xmlrpc.client.Transport):
    def make_connection(self, host):
        return Unix("localhost")
rpc = xmlrpc.client.ServerProxy("http://localhost", Transport())
"""
PROGRAM_STATE = SUPERVISOR_RPC + """\
for name in sys.argv[1:]:
    try:
        info = rpc.supervisor.getProcessInfo(name)
    except xmlrpc.client.Fault:  # not loaded
        print(name, "-", 0, "-")
        continue
    try:
        cwd = os.readlink(f"/proc/{info['pid']}/cwd") if info["pid"] else ""
    except OSError:
        cwd = ""
    # The folder is the app's to choose (any bytes, a newline too): it crosses as JSON.
    print(name, info["statename"], info["pid"], json.dumps(cwd))
"""


# Parsers: the lines of one @@section in, the fact's value out.

def first_line(lines):
    return lines[0].strip() if lines else ""


def non_empty(lines):
    return bool("".join(lines).strip())


def number(lines):
    text = "".join(lines).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def words_by_first(lines, make):
    """{first word: MAKE(*rest)} of lines with enough words for MAKE."""
    out = {}
    for line in lines:
        parts = line.split()
        if parts:
            out[parts[0]] = make(*parts[1:])
    return out


def by_last_field(lines, make, width):
    """{last field: MAKE(*first fields)} of lines split into WIDTH fields (the last, a path,
    may hold spaces)."""
    out = {}
    for line in lines:
        parts = line.split(" ", width - 1)
        if len(parts) == width:
            out[parts[-1]] = make(*parts[:-1])
    return out


def first_values(lines):
    """{key: value} of KEY=VALUE lines, the first of each key."""
    out = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep:
            out.setdefault(key, value)
    return out


def packages(lines):
    return {parts[0]: parts[1].startswith("ii") for parts in map(str.split, lines)
            if len(parts) >= 2}


def links(lines):
    out = {}
    for line in lines:
        target, _, path = line.rpartition(" ")
        if path:
            out[path] = target
    return out


def programs_running(lines):
    """{program: Program} from `name state pid "cwd"` lines (the folder as a JSON string,
    "-" for a program supervisor has not loaded)."""
    out = {}
    for line in lines:
        parts = line.split(" ", 3)
        if len(parts) != 4 or not parts[2].isdigit() or not STATE_RE.fullmatch(parts[1]):
            continue
        try:
            cwd = "" if parts[3] == "-" else json.loads(parts[3])
        except ValueError:
            continue
        if isinstance(cwd, str):
            out[parts[0]] = Program("" if parts[1] == "-" else parts[1], int(parts[2]), cwd)
    return out


def service(enabled="missing", active=""):
    return Service(enabled, active)


def services_script(units):
    """`unit enabled active` lines of UNITS (`missing` for a unit not installed), from one
    systemctl: its blocks come in the order asked."""
    if not units:
        return ""
    units = " ".join(units)
    return (f"systemctl show -p UnitFileState -p ActiveState {units} 2>/dev/null | "
            f"awk -v units={q(units)} 'BEGIN {{ RS = \"\"; FS = \"\\n\"; split(units, u, \" \") }} "
            '{ e = "missing"; a = ""; for (i = 1; i <= NF; i++) '
            '{ if ($i ~ /^UnitFileState=./) e = substr($i, 15); '
            'else if ($i ~ /^ActiveState=/) a = substr($i, 13) } print u[NR], e, a }\'')


def ufw_rule(line):
    """`allow 80/tcp` from a `### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in` line of
    ufw's user.rules, `allow 80/tcp from 10.0.0.2` from one whose source is one address
    (None for other rules)."""
    parts = line.split()[3:]
    if len(parts) < 6 or parts[3] not in ANYWHERE or parts[4] != "any":
        return None
    action, proto, port = parts[:3]
    rule = f"{action} {port}/{proto}" if proto != "any" else f"{action} {port}"
    if parts[5] in ANYWHERE:
        return rule
    return f"{rule} from {parts[5]}" if "/" not in parts[5] else None


def disk(lines):
    parts = "".join(lines).split()
    return Disk(int(parts[0]), int(parts[1])) if len(parts) == 2 and \
        all(p.isdigit() for p in parts) else None


def ssh_port(lines):
    """The server's port of this very connection, from $SSH_CONNECTION (22 if unknown)."""
    parts = "".join(lines).split()
    return int(parts[3]) if len(parts) == 4 and parts[3].isdigit() else 22


@dataclass(frozen=True)
class Fact:
    shell: Callable[[Any], str]  # settings (or Needs) -> read-only shell printing its lines
    parse: Callable[[list], Any]  # those lines -> the fact's value
    of_needs: bool = False  # its shell reads the stack's Needs, not the settings


def fact(shell, parse, default=None, default_factory=None, of_needs=False):
    """A field of `Facts` that knows how it is read from the server."""
    meta = {"fact": Fact(shell, parse, of_needs)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)
