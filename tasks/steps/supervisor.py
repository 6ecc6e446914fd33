"""Step 4: the supervisor programs that keep gunicorn (on a web host) and the app's extra
processes (on a worker host, or on the web hosts when there is none) alive."""

from tasks.declared import Needs
from tasks.health import app_socket
from tasks.host import install_script
from tasks.plan import Command, Plan, Step, upload
from tasks.release_phase import WITH_APP_ENV
from tasks.shell import DeployError, q
from tasks.site import install_script as nginx_install_script
from tasks.site import render_site
from tasks.switch import UP, bridged, legacy_port, live_release, serving
from tasks.templates import render


def needs(s):
    return Needs(packages=("supervisor",), services=("supervisor",),
                 files=(s.supervisor_conf,)) if s.runs_app else Needs(files=(s.supervisor_conf,))


def logs(s):
    return {"app": [f"{s.log_dir}/app.log", f"{s.log_dir}/error.log"],
            "supervisor": ["/var/log/supervisor/supervisord.log"],
            **{proc: [f"{s.log_dir}/{proc}.log"] for proc in s.processes}}


def render_conf(s):
    """gunicorn's program, then one per extra process: the same release (`current`), the
    app user, the app's environment loaded the way gunicorn loads it."""
    return render("supervisor.conf.j2", web=s.serves_app, name=s.name, current=s.current,
                  workers=s.workers, socket=s.socket, module=s.module, user=s.user,
                  log_dir=s.log_dir, gunicorn_conf=s.gunicorn_conf, with_env=q(WITH_APP_ENV),
                  processes=[(proc, q(cmd)) for proc, cmd in sorted(s.host_processes.items())])


def update_script(s, facts):
    """Load the changed programs of this app (and drop the ones it no longer has),
    restarting only them: never `reload`, which restarts every app's programs."""
    names = " ".join(q(p) for p in sorted(set(s.programs) | set(facts.programs)))
    return f"supervisorctl reread >/dev/null && supervisorctl update {names} >/dev/null"


def load_covered(h, program):
    """Write and load the changed PROGRAM (an Upload) while a candidate of the live release
    covers the restart. If the candidate fails, the old file and process stay as they were,
    so the next run still sees the change to make.

    A program of an earlier version listened on a loopback port, and its nginx site sends
    there: the site moves to the socket in the same command, behind the same candidate
    (which answers on the old backup port too, `switch.legacy_port`)."""
    s = h.settings
    tmp = h.upload(program.content)
    moving = s.serves_app and legacy_port(h.facts) is not None
    staged = h.upload(render_site(s)) if moving else None
    try:
        bridged(h, live_release(h), install_script(tmp, program.path)
                + update_script(s, h.facts)
                + (f"\n(\n{nginx_install_script(s, staged)})" if moving else ""),
                main=app_socket(s.socket))
    except DeployError:
        h.script(f"rm -f {q(tmp)}" + (f" {q(staged)}" if staged else ""), sudo=False)
        raise


def plan(s, facts):
    """Supervisor on at boot; the program written and loaded if it changed, else running."""
    changes = []
    if facts.service("supervisor") != ("enabled", "active"):
        changes.append(Command("enabled supervisor",
                               "systemctl enable --now supervisor >/dev/null 2>&1"))
    live = serving(s, facts)
    program = upload(facts, f"updated {s.supervisor_conf}", s.supervisor_conf, render_conf(s),
                     install=load_covered if live else None)
    if program:
        changes += program if live else [*program, Command("", update_script(s, facts))]
    elif facts.program_state not in UP:
        changes.append(Command(f"started {s.programs[0]}",
                               f"supervisorctl start {q(s.programs[0])} >/dev/null"))
    if changes:
        return Plan(changes)
    return Plan(ok=f"{s.programs[0]} running (pid {facts.program_pid}), "
                   f"program{'s' if len(s.programs) > 1 else ''} unchanged")


STEP = Step("supervisor", lambda h: plan(h.settings, h.facts),
            "Configure the supervisor programs that run gunicorn and app.processes.",
            lambda h: h.settings.runs_app)
