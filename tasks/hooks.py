"""Hooks and notifications around a deploy or rollback, on the operator's machine.

`app.hooks` are the operator's own commands (trusted as the settings file is): `pre_deploy`
runs once before any host is touched, and a failure stops the run there; `post_deploy` runs
after a run that succeeded everywhere, `failed` after one that failed somewhere. Each gets
the run's facts in its environment. `app.notify` gets one JSON POST per run (`text` for
Slack, `content` for Discord, and the facts as fields); a notification that cannot be
delivered is said in one line and never fails the run.
"""

import getpass
import json
import os
import socket
import subprocess
import sys
import urllib.request

from invoke import Exit

HOOKED = ("deploy", "rollback")
HOOK_TIMEOUT = 300
NOTIFY_TIMEOUT = 5


def facts_of(values, action, hosts, results=None):
    """The run's facts: app, action, hosts, who, and (once it ended) its result and the
    release and revision the first host's deploy log recorded."""
    runs = [r for r in (results or {}).values() if r is not None]
    entry = next((r.entry for r in runs if getattr(r, "entry", None)), None) or {}
    return {"app": values["name"], "action": action, "hosts": ",".join(hosts),
            "who": f"{getpass.getuser()}@{socket.gethostname()}",
            "result": ("failed" if any(r.failed for r in runs) else "ok") if results else "",
            "release": entry.get("release") or "", "revision": entry.get("revision") or ""}


def environment(facts):
    return {f"FAB_{key.upper()}": str(value) for key, value in facts.items()}


def run_hook(values, hook, facts):
    """Run app.hooks[HOOK], if set; its exit code (0 when there is none)."""
    command = (values["hooks"] or {}).get(hook)
    if not command:
        return 0
    print(f"hook {hook}: {command}", flush=True)
    try:
        return subprocess.run(command, shell=True, timeout=HOOK_TIMEOUT,
                              env={**os.environ, **environment(facts)}).returncode
    except subprocess.TimeoutExpired:
        print(f"hook {hook}: still running after {HOOK_TIMEOUT} s, stopped", file=sys.stderr)
        return 124


def before(values, action, hosts):
    """pre_deploy: a failure stops the run before any host is touched."""
    facts = facts_of(values, action, hosts)
    code = run_hook(values, "pre_deploy", facts)
    if code:
        raise Exit(f"{action}: the pre_deploy hook exited {code}; nothing was changed on "
                   f"{', '.join(hosts)}", code=1)


def message(facts):
    """One line for people: `shop deploy ok on web1,web2: 2026…-abc (a1b2c3) by tom@laptop`."""
    what = " ".join(x for x in (facts["release"], f"({facts['revision']})"
                                if facts["revision"] else "") if x)
    return (f"{facts['app']} {facts['action']} {facts['result']} on {facts['hosts']}"
            + (f": {what}" if what else "") + f" by {facts['who']}")


def after(values, action, hosts, results):
    """post_deploy or failed, then the notification."""
    facts = facts_of(values, action, hosts, results)
    hook = "failed" if facts["result"] == "failed" else "post_deploy"
    code = run_hook(values, hook, facts)
    if code:
        print(f"hook {hook}: exited {code}", file=sys.stderr)
    if values["notify"]:
        notify(values["notify"], facts)


def notify(url, facts):
    """POST the run's facts as JSON; one line on stderr when that fails, never an error."""
    text = message(facts)
    body = json.dumps({"text": text, "content": text, **facts}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=NOTIFY_TIMEOUT) as response:
            response.read(1024)
    except (OSError, ValueError) as e:
        print(f"notify: {url.split('?')[0]} could not be told ({getattr(e, 'reason', e)}); "
              "the run itself is unaffected", file=sys.stderr)
