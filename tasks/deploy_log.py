"""The deploy log: every converging run (provision, deploy, rollback, one step) has one JSON
line in /var/log/fab/<app>.jsonl on each server; `fab history` reads it. Root writes it, so
the app's account cannot forge it.

The line is written when the run takes the lock (the same round trip as the facts), as the
run would end if it changed nothing; a run that ends otherwise rewrites its line as it gives
the lock back, and its first change marks the line `unfinished` until then (what a killed
run leaves). So a converged run costs one round trip and is still logged.
"""

import getpass
import json
import socket
import subprocess

from tasks.once import once
from tasks.results import CHANGED, FAILED, OK
from tasks.shell import q

HISTORY_DIR = "/var/log/fab"


FIELDS = ("time", "action", "result", "release", "revision", "by")


def history_path(s):
    return f"{HISTORY_DIR}/{s.name}.jsonl"


def local_revision(path):
    """The git commit of a local source folder (with `+changes` when its files differ from
    it), or None when the folder is not in a git work tree."""
    def git(*args):
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              timeout=10)
    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+changes" if dirty else "")


def revision(h):
    """Where the shipped code came from: the git commit (the source's, or the local folder's),
    else the content hash of the folder."""
    s, source = h.settings, h.source
    if s.source_is_git:
        return source.identity[:12] if source and source.identity else s.ref
    return once(("revision", s.source_path), lambda: local_revision(s.source_path)) or (
        f"content {source.identity[:12]}" if source and source.identity else None)


def entry(h, action):
    """This run's line as it stands (without its time, which the server's clock stamps)."""
    run = h.run
    result = FAILED if run.failed else CHANGED if run.changed else OK
    failure = next((f"{o.step}: {o.message}" for o in run.outcomes if o.status == FAILED), None)
    release = (h.facts.live_release or None) if h.facts else None
    return {"release": release, "action": action, "result": result,
            "revision": revision(h) if h.source else None,  # the app step's source
            "by": f"{h.c.user} for {getpass.getuser()}@{socket.gethostname()}",
            "changed": run.count(CHANGED), "run": h.hold and h.hold.run_id,
            **({"failure": failure} if failure else {})}


def line_command(release, line):
    """printf printing LINE (an entry) stamped with the server's time; RELEASE is the shell
    word giving its release as JSON."""
    rest = json.dumps({k: v for k, v in line.items() if k != "release"})[1:]
    return ("printf '{\"time\": \"%s\", \"release\": %s, %s\\n' "
            f'"$(date -u +%Y-%m-%dT%H:%M:%SZ)" {release} {q(rest)}')


def marker(h):
    """The text that finds this run's line."""
    return f'"run": "{h.hold.run_id}"'


def first_script(h, action):
    """Append this run's line as if it ends changing nothing, with the release live on the
    server at that moment; run as the run takes the lock."""
    path, append = q(history_path(h.settings)), line_command('"$r"', entry(h, action))
    return (f"r=$(readlink {q(h.settings.current)} 2>/dev/null); r=${{r##*/}}; "
            '[ -n "$r" ] && r="\\"$r\\"" || r=null\n'
            f"install -d -o root -g adm -m 0750 {HISTORY_DIR} && "
            f"{{ [ -f {path} ] || install -o root -g adm -m 0640 /dev/null {path}; }} && "
            f"{append} >> {path} || true")


def unfinished_script(h):
    """Mark this run's line unfinished: run with its first change."""
    ok, unfinished = f'"result": "{OK}"', '"result": "unfinished"'
    return (f"sed -i {q(f'/{marker(h)}/s/{ok}/{unfinished}/')} "
            f"{q(history_path(h.settings))} 2>/dev/null || true")


def final_script(h, action):
    """Replace this run's line with how the run ended, stamped now."""
    line = entry(h, action)
    path, new = q(history_path(h.settings)), q(history_path(h.settings) + ".fab-new")
    return (f"{{ grep -vF {q(marker(h))} {path}; "
            f"{line_command(q(json.dumps(line['release'])), line)}; }} > {new} && "
            f"chown root:adm {new} && chmod 0640 {new} && mv -f {new} {path}")
