"""Put a Flask app into production on a Debian/Ubuntu server: `fab --list`.

This checkout's own entry: the installed tool's tasks (tasks/), plus the local sandbox
servers (`fab sandbox.*`) that the demo and the tests boot."""

from invoke import Collection

import sandbox.commands
from tasks import namespace

ns = namespace
ns.add_collection(Collection.from_module(sandbox.commands, name="sandbox"))
