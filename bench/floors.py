"""The floors: the same work as fab's, hand-written, as one OpenSSH command per server (as
root through sudo), all servers at once: what no tool can beat."""

import shlex
import subprocess
import time

from common import APP, DEFAULT_SETTINGS, requirements

import sandbox
from tasks.facts import script
from tasks.health import app_socket, probe_command
from tasks.shell import PYTHON
from tasks.steps import needs
from tasks.switch import RESTART_NOW, candidate_unit, start_candidate, stop_candidate

# The floors: the same work, hand-written, as one OpenSSH command per server (as root
# through sudo), all servers at once. Fresh: apt's lists, the packages, a venv with the app's
# requirements, ufw.
FRESH_FLOOR = f"""set -e
export DEBIAN_FRONTEND=noninteractive
apt-get -q update >/dev/null
apt-get -q -y install python3-venv nginx supervisor ufw >/dev/null
python3 -m venv /srv/floor
/srv/floor/bin/pip install -q {requirements()}
ufw allow OpenSSH >/dev/null && ufw allow http >/dev/null && ufw --force enable >/dev/null
"""


# The same, ending as fab's provision does, with the app serving: hello_world's files,
# gunicorn's four workers under supervisor, nginx's site in front, probed through nginx.
SERVED_FLOOR = FRESH_FLOOR + f"""mkdir -p /srv/floor-app && cat > /srv/floor-app/app.py <<'EOF'
{(APP / "app.py").read_text()}EOF
cat > /etc/supervisor/conf.d/floor.conf <<'EOF'
[program:floor]
command=/srv/floor/bin/gunicorn --workers 4 --bind 127.0.0.1:8000 --chdir /srv/floor-app app:app
user=nobody
EOF
supervisorctl reread >/dev/null && supervisorctl update floor >/dev/null
echo 'server {{ listen 80 default_server; location / {{ proxy_pass http://127.0.0.1:8000; }} }}' \
  > /etc/nginx/sites-available/floor
ln -sf ../sites-available/floor /etc/nginx/sites-enabled/floor
rm -f /etc/nginx/sites-enabled/default && systemctl reload nginx
{probe_command(DEFAULT_SETTINGS, "http://127.0.0.1", 60)} >/dev/null
"""


def fact_script():
    """Converged: one command reading what fab's facts read (tasks/facts.py's script, for
    the default settings)."""
    return script(DEFAULT_SETTINGS, needs(DEFAULT_SETTINGS))


def over_ssh(servers, script):
    """SCRIPT as root on every server at once, one OpenSSH command each; (seconds, None)."""
    start = time.monotonic()
    command = f"sudo sh -c {shlex.quote(script)}"
    procs = [subprocess.Popen([*sandbox.ssh_argv(s, sandbox.USER), command],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in servers]
    results = [(p, *p.communicate(timeout=1800)) for p in procs]
    elapsed = time.monotonic() - start
    for p, out, err in results:
        if p.returncode != 0:
            raise SystemExit(f"bench: a floor script failed:\n{out}\n{err}")
    return elapsed, None


def floor(servers):
    return over_ssh(servers, FRESH_FLOOR)


def served_floor(servers):
    return over_ssh(servers, SERVED_FLOOR)


# A code-only deploy's floor: the app's files (a tarball on stdin) unpacked into a new
# release beside the live one (named and marked as fab names and marks its own, so the next
# fab deploy sees a complete live release), its venv linked, `current` switched, gunicorn
# restarted the quickest way there is (fab's own: over supervisord's socket, no startsecs)
# and probed until it answers (fab's own probe): a deploy is done when the app serves.
DEPLOY_FLOOR = f"""set -e
cd /srv/hello-world
rid=$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \\n')
mkdir releases/$rid && tar -xzf - -C releases/$rid
ln -s "$(readlink current/.venv)" releases/$rid/.venv && echo floor > releases/$rid/.fab-release
@covered@ln -sfn releases/$rid current.floor && mv -Tf current.floor current
{PYTHON} -c {shlex.quote(RESTART_NOW)} hello-world
{probe_command(DEFAULT_SETTINGS, app_socket(DEFAULT_SETTINGS.socket), 60)} >/dev/null
@stopped@"""


# The same, with what makes fab's deploys fail no request: fab's candidate of the new
# release (by a fixed link, as fab's scripts quote the path they are given), started with
# four workers and probed before the switch, covering the restart, stopped (not waited
# for) after it.
FLOOR_RELEASE = "/srv/hello-world/floor-release"


def covered(unit):
    """The lines DEPLOY_FLOOR's @covered@ and @stopped@ stand for, for a candidate UNIT."""
    return {"@covered@": f"ln -sfn releases/$rid {FLOOR_RELEASE}\n"
                         + start_candidate(DEFAULT_SETTINGS, unit, FLOOR_RELEASE, 4) + "\n"
                         + probe_command(DEFAULT_SETTINGS,
                                         app_socket(DEFAULT_SETTINGS.candidate_socket), 60)
                         + " >/dev/null\n",
            "@stopped@": stop_candidate(unit, wait=False)
                         + f"\nrm -f {FLOOR_RELEASE}\n"}


# fab's builds use no pip cache (the build account keeps nothing between builds): nor does this.
PIP_FLOOR = ("rm -rf /tmp/pip-floor && python3 -m venv /tmp/pip-floor && PIP_NO_CACHE_DIR=1 "
             "/tmp/pip-floor/bin/pip install -q {requirements} 'itsdangerous==2.2.0' && "
             "rm -rf /tmp/pip-floor  # round {n}")


def deploy_floor(server, app, covered_by_candidate=False):
    """DEPLOY_FLOOR of APP's files on SERVER (COVERED_BY_CANDIDATE: fab's), one OpenSSH
    command; (seconds, None)."""
    script = DEPLOY_FLOOR
    for marker, lines in covered(candidate_unit(DEFAULT_SETTINGS)).items():
        script = script.replace(marker, lines if covered_by_candidate else "")
    start = time.monotonic()
    tar = subprocess.run(["tar", "-czf", "-", "-C", str(app), "."], capture_output=True,
                         check=True).stdout
    proc = subprocess.run([*sandbox.ssh_argv(server, sandbox.USER),
                           f"sudo sh -c {shlex.quote(script)}"], input=tar,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench: the deploy floor failed: {proc.stderr.decode()}")
    return time.monotonic() - start, None
