"""What a task did on each host: one result object per host, read by the executor.

Every result has `.failed`, `.changed` and `.recap()` (Fabric's GroupResult has
`.succeeded`/`.failed` the same way); `report()` prints a whole run's summary.
"""

import sys
from dataclasses import dataclass, field

OK, CHANGED, FAILED = "ok", "changed", "failed"


@dataclass
class Outcome:
    step: str
    status: str  # OK, CHANGED or FAILED
    message: str = ""
    seconds: float = None  # how long the step took, when timed


@dataclass
class Run:
    """The steps a converging task ran on one host, and the SSH round trips they took."""

    host: str
    outcomes: list = field(default_factory=list)
    round_trips: int = 0
    seconds: float = None  # the whole run on this host, once it ended
    entry: dict = None  # its line in the server's deploy log (tasks.deploy_log), once it ended

    def count(self, status):
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self):
        return self.count(FAILED) > 0

    @property
    def changed(self):
        return self.count(CHANGED) > 0

    def recap(self):
        took = f", {self.seconds:.1f} s" if self.seconds is not None else ""
        return (f"ok={self.count(OK)} changed={self.count(CHANGED)} failed={self.count(FAILED)}"
                f"  ({self.round_trips} SSH round trip{'s' * (self.round_trips != 1)}{took})")


@dataclass
class Unreached:
    """A host whose task raised before it could report (its one line was printed then)."""

    error: str
    failed = True
    changed = False

    def recap(self):
        return "unreachable or failed (see above)"


class Skipped:
    """A host left alone because an earlier batch of a serial run failed."""

    failed = True
    changed = False

    def recap(self):
        return "skipped: an earlier host failed, this one was not touched"


def report(results):
    """Print `recap:` and one line per host of RESULTS ({host: result})."""
    print("recap:")
    width = max(len(str(host)) for host in results)
    for host, result in results.items():
        print(f"  {host:<{width}}  {result.recap()}")
    sys.stdout.flush()
