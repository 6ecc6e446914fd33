"""What a step declares beside its plan, for the parts of the tool that serve every step:
the packages, services, files and ports it needs (`Needs`: the facts read them, the
packages and firewall steps act on them), its log files (`fab logs`) and its column in
`fab status`. The stack (tasks.steps) collects them from its list of steps."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Needs:
    """What the stack needs on a host, as its steps declare it (tasks.steps.needs): what
    the facts ask about, and the ports the firewall opens."""

    packages: tuple = ()
    later: tuple = ()  # of the packages, those only the steps after the app's use
    services: tuple = ()  # systemd units on and running
    files: tuple = ()  # whose checksum, owner and mode the facts read
    dirs: tuple = ()  # whose owner and mode the facts read
    links: tuple = ()  # whose target the facts read
    ports: tuple = ()  # ("80/tcp", sources): from those addresses only; None: anywhere


class Journal(NamedTuple):
    """A log kept in the journal of a systemd unit, not in files."""

    unit: str


@dataclass(frozen=True)
class Column:
    """A step's column in `fab status`: SHELL(settings) prints what READ(settings, lines)
    turns into (the cell's text, a problem or "")."""

    title: str
    shell: Callable
    read: Callable
