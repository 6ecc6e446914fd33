"""Step 3: the supervisor program that keeps gunicorn alive, and its handlers."""

from tasks.core import CHANGED, OK, q, render
from tasks.files import ensure_file


def render_conf(s):
    return render("supervisor.conf.j2", name=s.name, current=s.current, workers=s.workers,
                  port=s.port, module=s.module, user=s.user, log_dir=s.log_dir)


def converge(h):
    """Write the program; re-read it only if it changed; reload the app if notified."""
    s, f = h.settings, h.facts
    changes = []
    if f.services.get("supervisor", ("", ""))[0] != "enabled" or \
            f.services["supervisor"][1] != "active":
        h.change("systemctl enable --now supervisor >/dev/null 2>&1")
        changes.append("enabled supervisor")
    if ensure_file(h, s.supervisor_conf, render_conf(s)):
        h.change(f"supervisorctl reread >/dev/null && supervisorctl update {q(s.name)} >/dev/null")
        changes.append(f"updated {s.supervisor_conf}")
    elif "app" in h.notified and f.program_state == "RUNNING":
        h.change(reload_command(s, h.notified))
        changes.append("reloaded the app")
    elif f.program_state != "RUNNING":
        h.change(f"supervisorctl start {q(s.name)} >/dev/null")
        changes.append(f"started {s.name}")
    h.notified.discard("app")
    return (CHANGED, ", ".join(changes)) if changes else (OK, "")


def reload_command(s, notified):
    """HUP reloads code gracefully; a new virtualenv needs a new master process."""
    if "venv" in notified:
        return f"supervisorctl restart {q(s.name)} >/dev/null"
    return f"supervisorctl signal HUP {q(s.name)} >/dev/null"
