"""A run on one host: from Fabric's connection and config to a `Host` with its settings."""

from invoke import Exit

from tasks.config import load
from tasks.host import Host
from tasks.roles import for_host


def open_host(c, dry_run=False):
    """The Host of connection C, with its validated settings."""
    if not hasattr(c, "host"):
        raise Exit("no host given: run it as `fab -H user@server TASK`", code=2)
    return Host(c, for_host(load(c.config), c.config, c.original_host), dry_run)
