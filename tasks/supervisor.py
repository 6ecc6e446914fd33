"""Step 3: the supervisor program that keeps gunicorn alive."""

from tasks.core import CHANGED, OK, q, render
from tasks.deploy import bridged, live_release
from tasks.files import ensure_file


def render_conf(s):
    return render("supervisor.conf.j2", name=s.name, current=s.current, workers=s.workers,
                  port=s.port, module=s.module, user=s.user, log_dir=s.log_dir,
                  gunicorn_conf=s.gunicorn_conf)


def converge(h):
    """Write the program; apply it only if it changed (covered by a candidate if serving)."""
    s, f = h.settings, h.facts
    changes = []
    if f.services.get("supervisor", ("", ""))[0] != "enabled" or \
            f.services["supervisor"][1] != "active":
        h.change("systemctl enable --now supervisor >/dev/null 2>&1")
        changes.append("enabled supervisor")
    if ensure_file(h, s.supervisor_conf, render_conf(s)):
        apply = f"supervisorctl reread >/dev/null && supervisorctl update {q(s.name)} >/dev/null"
        live = live_release(h)
        if live and not h.dry_run:
            bridged(h, live, apply)
        else:
            h.change(apply)
        changes.append(f"updated {s.supervisor_conf}")
    elif f.program_state != "RUNNING":
        h.change(f"supervisorctl start {q(s.name)} >/dev/null")
        changes.append(f"started {s.name}")
    return (CHANGED, ", ".join(changes)) if changes else (OK, "")
