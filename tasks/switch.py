"""The release switch: without downtime, health-checked, rolled back by itself.

How a switch keeps the site answering (`bridged`): the new release is first started
as a *candidate* gunicorn on its own socket (a transient systemd unit, as the app user)
and health-checked there; a broken release stops here, before any traffic sees it.
nginx lists the candidate's socket as a `backup` upstream, so while supervisor restarts
the main program on the new release (graceful TERM: in-flight requests finish),
connections the main socket refuses go to the candidate (both sockets sit in a folder
only the app and nginx reach: no other local account can answer in the app's place).
Once the main program answers healthy, on its socket and through nginx, the candidate
is stopped. If it does not, `current` is switched back and the main program restarted
on the old release.

A plain HUP is not enough: it keeps the master's old interpreter and virtualenv
(gunicorn #394, #2449), and HUP into a broken release takes the site down.
"""

import re
from contextlib import contextmanager

from tasks.health import app_socket, parse_probe, probe_command
from tasks.names import RELEASE_ID
from tasks.readers import SUPERVISOR_RPC
from tasks.shell import PYTHON, DeployError, q
from tasks.units import fresh, transient

PYTHON_ERROR = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b")


def candidate_unit(s):
    """A fresh unit name per candidate: a stopped transient unit may stay loaded a moment,
    and starting one of the same name then fails ("already loaded")."""
    return fresh(f"{s.name}-candidate")


def expect_healthy(h, checks, first=""):
    """Probe each (base URL, what) of CHECKS in turn, until healthy or the health timeout;
    raise with details for the first that is not, else return the last one's (code, ms).
    The site's answer through nginx is kept as the host's `site_answer`.
    FIRST, when given, is a change run just before, in the same command (a candidate's
    start, a switch): one round trip for the change and its proof."""
    s = h.settings
    probes = " && ".join(probe_command(s, base, s.health_timeout) for base, _ in checks)
    if first:
        out = h.change(f"{first}\necho @@probes\n{{ {probes}; }} || true").split("@@probes\n")[-1]
    else:
        out = h.script(probes).stdout
    answers = [line for line in out.split("\n") if line.strip()]
    for i, (base, what) in enumerate(checks):
        ok, code, ms, excerpt = parse_probe(answers[i] if i < len(answers) else "")
        if not ok:
            answer = f"HTTP {code}" if code else "no answer"
            raise DeployError(f"{what} is unhealthy: GET {base}{s.health_path} "
                              f"gave {answer}: {excerpt[:100]!r}")
        if base == s.site_url:
            h.site_answer = f"HTTP {code} in {ms:.0f} ms through nginx"
    return code, ms


def app_log_tail(h, unit=None, lines=6):
    """The app's last log lines, errors first: the exception beats gunicorn's own traceback."""
    s = h.settings
    source = (f"journalctl -u {q(unit)} -n 200 --no-pager -o cat" if unit
              else f"tail -n 200 {q(s.log_dir)}/error.log")
    out = h.script(source + " 2>/dev/null").stdout.splitlines()
    errors = [line for line in out if PYTHON_ERROR.match(line) and "HaltServer" not in line]
    shown = list(dict.fromkeys(errors))[-3:] + out[-(lines - 3):] if errors else out[-lines:]
    return "\n".join("  | " + line for line in shown)


def start_candidate(s, unit, release, workers, legacy=None):
    """A script starting gunicorn on RELEASE, on the candidate's socket, as the app user,
    with WORKERS workers, as UNIT. Candidates a dead run left behind are stopped first.
    LEGACY: the port a deployment of an earlier version serves on (`legacy_port`): its
    nginx still sends to port+1 while the live gunicorn restarts, so the candidate
    answers there too, until this run has moved the app to its socket."""
    also = f"--bind 127.0.0.1:{legacy + 1} " if legacy else ""
    return (f"systemctl stop {q(s.name + '-candidate-*')} >/dev/null 2>&1 || true\n"
            + transient(f"{q(release)}/.venv/bin/gunicorn --config {q(s.gunicorn_conf)} "
                        f"--chdir {q(release)} --workers {workers} "
                        f"--bind unix:{q(s.candidate_socket)} {also}{q(s.module)}",
                        unit, user=s.user, cwd=q(release), properties=("KillMode=mixed",)))


LEGACY_BIND = re.compile(r"--bind 127\.0\.0\.1:(\d+) ")


def legacy_port(facts):
    """The loopback port the app's program listens on, in a deployment of a version before
    sockets (None: it uses its socket, or there is none)."""
    found = LEGACY_BIND.search(facts.program_conf.get("command", "") + " ")
    return int(found.group(1)) if found else None


def stop_candidate(unit, wait=True):
    """A script stopping the candidate UNIT; without WAIT it returns at once, and the
    candidate finishes its graceful exit on its own (the facts do not count a stopping
    candidate as left behind; the next one's start waits for it)."""
    return f"systemctl stop {'' if wait else '--no-block '}{q(unit)} >/dev/null 2>&1 || true"


def link_current(s, rid):
    """Point `current` at releases/RID by renaming a new symlink over it (atomic), and
    `previous` at the release it pointed to (when that has fab's shape of a release)."""
    current, previous = q(s.current), q(s.previous)
    return (f'old=$(readlink {current} || true)\n'
            f"ln -sfn releases/{q(rid)} {current}.fab-new\n"
            f"mv -Tf {current}.fab-new {current}\n"
            f'if [ "$old" != releases/{q(rid)} ] && printf %s "$old" | grep -qxE '
            f"{q('releases/' + RELEASE_ID.pattern)}; then\n"
            f'  ln -sfn "$old" {previous}.fab-new && mv -Tf {previous}.fab-new {previous}\nfi')


# Stop (gracefully, waiting for the exit) and start, over supervisord's socket, without
# waiting out `startsecs`: gunicorn's proof is the health probes that follow, not a second
# of staying up (`supervisorctl restart` waits it, and its own start costs a quarter second).
RESTART_NOW = SUPERVISOR_RPC + """\
name = sys.argv[1]
try:
    rpc.supervisor.stopProcess(name, True)
except xmlrpc.client.Fault as e:
    if not e.faultString.startswith("NOT_RUNNING"):
        sys.exit(f"supervisor could not stop {name}: {e.faultString}")
try:
    rpc.supervisor.startProcess(name, False)
except xmlrpc.client.Fault as e:
    sys.exit(f"supervisor could not start {name}: {e.faultString}")
"""


def restart_script(s, loaded=None):
    """Restart the app's programs: gunicorn (on a web host) without waiting out startsecs,
    then the extra processes, whose only proof is staying up, with supervisorctl's wait.
    LOADED: the programs supervisor has now; a new one starts when the supervisor step
    loads it."""
    programs = [p for p in s.programs if loaded is None or p in loaded or p == s.programs[0]]
    gunicorn, rest = (programs[:1], programs[1:]) if s.serves_app else ([], programs)
    return "\n".join([*(f"{PYTHON} -c {q(RESTART_NOW)} {q(p)}" for p in gunicorn),
                      *([f"supervisorctl restart {' '.join(map(q, rest))} >/dev/null"]
                        if rest else [])])


def switch_script(s, rid, loaded=None):
    """Make releases/RID current and restart the app's programs on it."""
    return f"{link_current(s, rid)}\n{restart_script(s, loaded)}"


UP = ("RUNNING", "STARTING")  # STARTING: started, within startsecs (a switch just now)


def serving(s, facts):
    """The path of the release the running app serves, or None if nothing is serving."""
    live = facts.live_release
    return f"{s.releases}/{live}" if live and facts.program_state in UP else None


def live_release(h):
    return serving(h.settings, h.facts)


def release_of(s, program):
    """The release a running PROGRAM (a readers.Program) was started in, from its working
    folder; None if it runs elsewhere (a process that changed folder) or not at all."""
    prefix = f"{s.releases}/"
    if program.state != "RUNNING" or not program.release.startswith(prefix):
        return None
    return program.release[len(prefix):].split("/")[0].removesuffix(" (deleted)")


def stale_programs(s, running, current):
    """{program: release} of the programs RUNNING (facts.running) on a release other than
    CURRENT (the release `current` points to): a switch was interrupted before their
    restart, or a release was switched by hand."""
    out = {}
    for name, program in running.items():
        rid = release_of(s, program)
        if rid is not None and rid != current:
            out[name] = rid
    return out


@contextmanager
def candidate(h, release, covers=True, then=""):
    """A candidate gunicorn of RELEASE on port+1, proven healthy before the block runs (or
    this raises with its log: the app's own exception first), stopped after it. One that
    only proves the release (COVERS false: no traffic reaches it) has a single worker: ten
    fresh servers sharing two cores start thirty fewer Python processes.

    When the block succeeds, its stop does not wait for the candidate's graceful exit
    (0.3 s idle, twice that under load), and THEN (a change that needs the block's success)
    runs in the same command."""
    s = h.settings
    unit = candidate_unit(s)
    try:
        try:
            expect_healthy(h, [(app_socket(s.candidate_socket), "the new release")],
                           first=start_candidate(s, unit, release, s.workers if covers else 1,
                                                 legacy_port(h.facts)))
        except DeployError as e:
            raise DeployError(f"{e}; it was not switched in. Its log:\n"
                              + app_log_tail(h, unit)) from None
        yield
    except BaseException:
        h.change(stop_candidate(unit))
        raise
    h.change("\n".join([stop_candidate(unit, wait=False), then]), serving_unchanged=not then)


def not_running(h, what):
    """A DeployError naming the app's programs on this host that are not RUNNING (after
    supervisor's `restart` waited their startsecs), with their log; None if all run."""
    s = h.settings
    out = h.script(f"supervisorctl status {' '.join(q(p) for p in s.programs)}").stdout
    down = [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[1:2] != ["RUNNING"]]
    if not down:
        return None
    logs = h.script(" ".join(f"tail -n 3 {q(s.log_dir)}/{p.removeprefix(s.name + '-')}.log;"
                             for p in down) + " true").stdout
    return DeployError(f"{what}: {', '.join(down)} not running. Log:\n"
                       + "\n".join("  | " + line for line in logs.splitlines()[-6:]))


def main_target(s, facts):
    """Where the live gunicorn answers, as a probe's target: its socket, or the loopback
    port of a deployment made by a version before sockets, until the supervisor step has
    moved its program (`legacy_port`)."""
    legacy = legacy_port(facts)
    return f"http://127.0.0.1:{legacy}" if legacy else app_socket(s.socket)


def expect_serving(h, what, through_nginx=True, first="", main=None):
    """After FIRST (a change, in the same command on a web host), a web host answers healthy
    on gunicorn's socket (MAIN, if given: `main_target`) and through nginx; a worker host's
    processes run."""
    s = h.settings
    if not s.serves_app:
        if first:
            h.change(first)
        problem = not_running(h, what)
        if problem:
            raise problem
        return
    expect_healthy(h, [(main or main_target(s, h.facts), what)]
                   + ([(s.site_url, "the site through nginx")] if through_nginx else []), first)


def bridged(h, release, action, undo=None, main=None):
    """Run ACTION (which restarts the main program) while a candidate of RELEASE covers
    for it; afterwards the main program must be healthy (at MAIN, if given), or UNDO runs
    and this raises.
    On a worker host the candidate proves the release loads and answers before its
    processes restart on it."""
    with candidate(h, release, covers=h.settings.serves_app):
        try:
            expect_serving(h, "the app after the switch", first=action, main=main)
        except DeployError as e:
            if not h.settings.serves_app:  # a failed restart says only its exit code
                e = not_running(h, "the app after the switch") or e
            log = app_log_tail(h) if h.settings.serves_app else ""
            if undo:
                expect_serving(h, "the app after rolling back", through_nginx=False, first=undo)
                e = DeployError(f"{e}; rolled back." + (f" App log:\n{log}" if log else ""))
            raise e from None


def first_release(h, rid):
    """Make releases/RID live where nothing serves yet: a candidate proves it healthy, then
    `current` points at it."""
    s = h.settings
    with candidate(h, f"{s.releases}/{rid}", covers=False, then=link_current(s, rid)):
        pass


def switch_to(h, rid, previous):
    """Make releases/RID live without downtime; roll back to PREVIOUS if it is unhealthy."""
    s = h.settings
    loaded = h.facts.programs
    undo = switch_script(s, previous, loaded) if previous else None
    bridged(h, f"{s.releases}/{rid}", switch_script(s, rid, loaded), undo)


def restart(h):
    """Restart the live app and its processes the covered way (its environment changed)."""
    bridged(h, live_release(h), restart_script(h.settings, h.facts.programs))
