"""`fab history`: the deploy log of each host (tasks.deploy_log), newest first."""

import json
import sys
from dataclasses import dataclass

from invoke import task

from tasks.deploy_log import FIELDS, history_path
from tasks.output import say
from tasks.run import open_host
from tasks.shell import q


@dataclass
class History:
    """One host's entries, newest first."""

    entries: list
    as_json: bool = False
    failed = False
    changed = False

    def recap(self):
        return f"{len(self.entries)} entries"

    @staticmethod
    def report(results):
        """All hosts' entries merged, newest first: a table, or one JSON array."""
        read = {host: r for host, r in results.items() if isinstance(r, History)}
        rows = sorted(({"host": host, **e} for host, r in read.items() for e in r.entries),
                      key=lambda e: e.get("time", ""), reverse=True)
        if any(r.as_json for r in read.values()):
            json.dump(rows, sys.stdout, indent=1)
            print()
            return
        for e in rows:
            line = "  ".join(f"{str(e.get(k) or '-'):<{w}}" for k, w in
                             zip(FIELDS, (20, 9, 10, 27, 19, 0), strict=True))
            say(e["host"], line.rstrip() + (f"  ({e['failure']})" if e.get("failure") else ""))
        if not rows:
            print("history: no runs recorded yet on these hosts")


def parse(text):
    entries = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut short (a full disk): skip it, keep the rest
    return entries


@task(name="history", help={"json": "print one JSON array (every host, newest first)",
                            "limit": "entries per host (default 20)"})
def history(c, json_=False, limit=20):
    """Show who deployed, rolled back or provisioned what and when on each host, newest first."""
    h = open_host(c)
    out = h.read(f"tail -n {int(limit)} {q(history_path(h.settings))} 2>/dev/null || true")
    return History(parse(out)[::-1], json_)
