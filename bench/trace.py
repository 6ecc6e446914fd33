"""`fab`, with each SSH round trip timed: bench/trace.py -H web1 deploy (the bench's own tool).

The same program as `.venv/bin/fab` (Fabric's), with `Host.execute` and `Host.upload`
wrapped: each round trip prints `@trace SECONDS WHAT` on stderr as it ends, WHAT naming
the work (`round_trip`), so the bench can say where a command's time goes.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fabric.main import program  # noqa: E402

from tasks.host import Host  # noqa: E402

# What a round trip does, from the first marker its command holds (in this order).
KINDS = (("head -n -", "old releases pruned, facts again"),
         ('"$mark before"', "lock, log line, facts"), ('"$mark os_id"', "facts again"),
         (".build-", "release built"), ("--workers", "candidate started, probed"),
         ("stop --no-block", "candidate stopped"), ("mv -Tf", "switched, probed"),
         ("grep -vF", "log line, lock given back"), ("import ssl", "site probed"))


def round_trip(command, *_):
    """The name of the work COMMAND does (its first line when none is known)."""
    return next((kind for marker, kind in KINDS if marker in command),
                command.strip().splitlines()[0][:60])


def traced(method, what):
    def run(self, *args, **kwargs):
        began = time.monotonic()
        try:
            return method(self, *args, **kwargs)
        finally:
            print(f"@trace {time.monotonic() - began:.3f} {what(*args)}", file=sys.stderr)
    return run


Host.execute = traced(Host.execute, round_trip)
Host.upload = traced(Host.upload, lambda content: "upload")

if __name__ == "__main__":
    program.run()
