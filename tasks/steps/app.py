"""Step 2: the app user, the app's code as a release, its virtualenv and its environment.

Layout on the server (Capistrano-style, so rollback is a symlink switch):

    <dir>/releases/<UTC time>-<content hash>/   the code, owned by root, read-only to the app
    <dir>/venvs/<requirements hash>/            one virtualenv per distinct requirements.txt
    <dir>/releases/<id>/.venv -> ../../venvs/<hash>
    <dir>/current -> releases/<id>              switched atomically (rename of a new symlink)
"""

import hashlib
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path

from tasks.backups import backup_script
from tasks.declared import Needs
from tasks.engines import ENGINES
from tasks.names import RELEASE_ID, VENV_HASH
from tasks.names import candidate_unit as candidate_unit_shape
from tasks.plan import Call, Command, Plan, Step, differs, mask, upload
from tasks.roles import database_host
from tasks.shell import DeployError, for_systemd, q
from tasks.source import content_hash, select, tarball
from tasks.switch import (
    bridged,
    first_release,
    live_release,
    restart_script,
    serving,
    stale_programs,
    switch_to,
)
from tasks.templates import render
from tasks.units import detached, transient, work_unit


def driver(s):
    """The database driver the app's DATABASE_URL names (PyPI requirement), or ""."""
    return ENGINES.get(s.managed_database, (None, None, None))[2] or ""


def unless_listed(s):
    """[(requirement, the name requirements.txt lists it by, as an ERE)] of what the tool
    adds to a venv only when the app's own requirements do not pin it."""
    names = {"postgresql": "psycopg2(-binary)?", "mysql": "pymysql"}
    return [(GUNICORN, "gunicorn")] + (
        [(driver(s), names[s.managed_database])] if driver(s) else [])


def extras_line(s):
    """What a venv holds beside requirements.txt, as a line its hash covers: app.packages,
    the gunicorn the tool is tested with and the database driver (each installed only if
    requirements.txt lacks it)."""
    return f"\n#fab {s.packages} {GUNICORN} {driver(s)}".rstrip().encode()


def requirements_hash(root, s):
    """The venv's identity: requirements.txt and the extras (`extras_line`)."""
    data = (Path(root) / "requirements.txt").read_bytes() + extras_line(s)
    return hashlib.sha256(data).hexdigest()[:16]


def release_id(tree_hash):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + tree_hash[:8]


GUNICORN = "gunicorn==23.0.0"  # what the tool is tested with, for apps that do not pin one
SUDO_GROUPS = {"sudo", "admin", "wheel", "root"}
# A build runs the app's packages' code: it may write only the release (and its venv and
# scratch folder), sees no home, no /tmp, /var/tmp or /dev/shm but its own (gone with it)
# and no other process, gains no privilege (no setuid: no crontab, no at), and everything
# it starts ends with it.
BUILD_SANDBOX = ("NoNewPrivileges=yes", "RestrictSUIDSGID=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "TemporaryFileSystem=/dev/shm:mode=1777",
                 "ProtectProc=invisible", "KillMode=control-group")


def ancestors(path):
    """The directories nginx must traverse to reach PATH, from / down."""
    out = []
    while path not in ("/", ""):
        path = posixpath.dirname(path)
        if path != "/":
            out.append(path)
    return list(reversed(out))


def needs(s):
    """Python's venv (and git, for a git source) on an app host; the app's tree, its
    runtime files and the links to the live release everywhere (the facts tell a host
    that has them from one that never had)."""
    git = s.source_is_git and s.runs_app
    return Needs(packages=(("python3-venv",) + (("git",) if git else ())) if s.runs_app else (),
                 files=(s.gunicorn_conf, s.env_path,
                        *([s.git_credentials_path] if git and s.git_credentials else [])),
                 dirs=(*ancestors(s.dir), s.dir, s.releases, s.venvs, s.shared, s.log_dir,
                       s.conf_dir, s.socket_dir),
                 links=(s.current, f"{s.current}/.venv"))


def account_comment(s, build=False):
    """What fab writes in the comment field of the accounts it makes: how it knows them."""
    return f"fab builds {s.name}" if build else f"fab app {s.name}"


def system_account(s, build=False):
    """The app's account (or its build account, with BUILD): a system account with no
    login shell, no home, no sudo, a group of its own and fab's comment; an account of the
    build is never cron's or at's."""
    name = s.build_user if build else s.user
    make = (f"useradd --system --user-group --shell /usr/sbin/nologin --home-dir /nonexistent "
            f"--no-create-home --comment {q(account_comment(s, build))} {q(name)}")
    if not build:
        return make
    return "\n".join([make, *(f"grep -qsxF {q(name)} {deny} || echo {q(name)} >> {deny}"
                              for deny in ("/etc/cron.deny", "/etc/at.deny"))])


def adopted(s, facts):
    """Whether the existing account app.user is one fab made: its comment says so, or (made
    by an earlier version, without a comment) it is a system account as fab makes them and
    this app's tree or program already run as it."""
    account = facts.user_account
    if account is None:
        return False
    if account.comment == account_comment(s):
        return True
    return (account.home, account.shell) == ("/nonexistent", "/usr/sbin/nologin") and (
        facts.modes.get(s.shared, ("",))[0] == s.user or facts.program_conf.get("user") == s.user)


def foreign_user(s, facts):
    """Why app.user may not be used (None: it may): an account fab did not make."""
    if facts.user_exists and not adopted(s, facts):
        return (f"app.user={s.user} is an account fab did not make (another service's, like "
                "www-data or postgres?): leave app.user unset (the app gets its own account), "
                "or name one no account has")
    return None


def refusals(s, facts):
    """Why this deploy tree or app user would let the app reach root (empty: none)."""
    out = [foreign] if (foreign := foreign_user(s, facts)) else []
    powerful = SUDO_GROUPS & facts.user_groups
    if powerful:
        out.append(f"app.user={s.user} is in group {', '.join(sorted(powerful))}, so the app "
                   "could become root: leave app.user unset (the app gets its own account)")
    for d in [*ancestors(s.dir), s.dir, s.releases, s.venvs]:
        if d not in facts.modes:
            continue
        owner, group, mode = facts.modes[d]
        bits = int(mode, 8)
        if owner == s.user or bits & 0o002 or (bits & 0o020 and group in facts.user_groups):
            out.append(f"{d} is writable by the app user {s.user} ({owner}:{group} {mode}): "
                       f"the deploy tree must be root's; set app.dir below a root-owned "
                       f"directory (the default is /srv/{s.name})")
    return out


def layout_script(s, facts):
    """Create the app's account (and the build account) and directories; open the path
    for nginx to traverse."""
    lines = []
    if not facts.user_exists:
        lines.append(system_account(s))
    elif facts.user_account and facts.user_account.comment != account_comment(s):  # adopted
        lines.append(f"usermod --comment {q(account_comment(s))} {q(s.user)}")
    if not facts.build_user_exists:
        lines.append(system_account(s, build=True))
    wanted = [(s.dir, "root", "root", "755"), (s.releases, "root", "root", "755"),
              (s.venvs, "root", "root", "755"), (s.shared, s.user, s.user, "750"),
              (s.log_dir, "root", s.user, "750"), (s.socket_dir, s.user, "www-data", "750")]
    for path, owner, group, mode in wanted:
        if facts.modes.get(path) != (owner, group, mode):
            lines.append(f"install -d -o {owner} -g {q(group)} -m {mode} {q(path)}")
    for d in ancestors(s.dir):
        mode = facts.modes.get(d, ("", "", "0"))[2]
        if int(mode, 8) & 0o001 == 0:
            lines.append(f"chmod o+x {q(d)}")
    return lines


def moved(s, facts):
    """What changes for a deployment made by an earlier version (the app ran as another
    user, from another tree), as words for the step line; "" if nothing."""
    before = facts.program_conf
    old_user, old_dir = before.get("user"), before.get("directory", "").removesuffix("/current")
    if not before or (old_user, old_dir) == (s.user, s.dir):
        return ""
    return (f"moved the app from user {old_user} and {old_dir} to user {s.user} and {s.dir} "
            f"(the old tree stays, for you to remove: its logs are in {s.log_dir})")


def unpack_tarball(tarball_path):
    """The release_script lines that unpack an uploaded tarball into "$release"."""
    return [f"trap 'rm -f {q(tarball_path)}' EXIT",
            f'tar -xzf {q(tarball_path)} -C "$release" --no-same-owner']


def unpack_commit(s, sha):
    """The release_script lines that export commit SHA of the server's mirror into "$release"."""
    return [f'git -C {q(s.repo_cache)} archive --format=tar {q(sha)} '
            '| tar -x -C "$release" --no-same-owner']


def git_command(s):
    """git, given the source's credentials (if its URL has any) from a root-only file."""
    if not s.git_credentials:
        return "GIT_TERMINAL_PROMPT=0 git"
    helper = q(f"store --file={s.git_credentials_path}")
    return f"GIT_TERMINAL_PROMPT=0 git -c credential.helper= -c credential.helper={helper}"


def git_resolve_script(s):
    """Fetch the git source into the server's mirror; print the commit of app.ref and the hash
    of its requirements.txt (the same hash `requirements_hash` gives for a local folder).

    A password in the URL never reaches a command line: git gets the URL without it and
    the credential from the root-only file its helper reads."""
    m, url, git = q(s.repo_cache), q(s.git_url), git_command(s)
    return f"""umask 077
if [ ! -d {m} ]; then
  rm -rf {m}.fab-new
  {git} clone --quiet --mirror -- {url} {m}.fab-new
  mv {m}.fab-new {m}
else
  git -C {m} remote set-url origin {url}
  {git} -C {m} fetch --quiet --prune origin
fi
sha=$(git -C {m} rev-parse --verify --quiet {q(s.ref + "^{commit}")}) || {{
  echo "no commit {s.ref} in {s.source_shown}" >&2; exit 1; }}
git -C {m} cat-file -e "$sha:requirements.txt" 2>/dev/null || {{
  echo "no requirements.txt at {s.ref} ($sha) in {s.source_shown}" >&2; exit 1; }}
extras={q(extras_line(s).decode().lstrip(chr(10)))}
echo "$sha $({{ git -C {m} show "$sha:requirements.txt"; printf '\\n%s' "$extras"; }} \\
  | sha256sum | cut -c1-16)"
"""


def link_shared(s, base=None):
    """The release_script lines that link app.shared_paths into "$release" (to BASE, by
    default <dir>/shared). The first linking says `shared over: PATH` where the release had
    its own. Shared paths are top-level names, so a link is only ever made in the release's
    own folder; shared folders are made by the app user itself, so root never follows a
    link the app left in its own state."""
    lines = []
    for path, is_dir in s.shared_items:
        if base is None:
            if is_dir:
                lines.append(f"runuser -u {q(s.user)} -- mkdir -p {q(s.shared)}/{q(path)}")
            lines += [f'if [ -e "$release"/{q(path)} ] || [ -L "$release"/{q(path)} ]; then',
                      f"  echo 'shared over: {path}'",
                      "fi"]
        lines += [f'rm -rf "$release"/{q(path)}',
                  f'ln -s {base or q(s.shared)}/{q(path)} "$release"/{q(path)}']
    return lines


def build_function(s, venv):
    """A shell function `build CMD...`: run CMD as the build account in the release, with the
    venv first on PATH and the app's environment (read by systemd, as the env file is not
    the build account's to read), in a transient service: nothing it starts outlives it
    (a process left behind could still write the files after they are sealed)."""
    env = (f"EnvironmentFile=-{q(s.env_path)}",) if s.env_file else ()
    writable = ('"ReadWritePaths=$release"', f"ReadWritePaths=-{venv}",
                f"ReadWritePaths=-{q(s.build_scratch)}")
    run = transient('"$@"', wait=True, io="pipe", user=s.build_user, cwd='"$release"',
                    properties=("RuntimeMaxSec=900", *env, *BUILD_SANDBOX, *writable),
                    env=(f"PATH={venv}/bin:/usr/local/bin:/usr/bin:/bin", "HOME=/nonexistent",
                         "PIP_NO_CACHE_DIR=1"))
    return f"build() {{ {run}; }}"


def seal(path):
    """Make PATH root's and read-only to everyone else: no group or other write, no setuid.
    -h and -R never follow a link the build left there."""
    return [f"chown -hR root:root {path}", f"chmod -R go-w,ug-s {path}"]


def release_script(s, unpack, rid, tree_hash, venv_hash, build_venv):
    """Unpack the app into releases/RID (UNPACK: lines filling "$release") and link its
    shared paths; then, as the build account, build its venv if new (pip runs packages'
    build code, in the release, so local packages build in place) and run app.build_command,
    while the shared paths point to scratch folders (a build needs no live data, and cannot
    harm it); then seal it all root's. Last, root writes the release's marker and venv link,
    after removing whatever the source put there: never writing through a link."""
    release = f"{s.releases}/{rid}"
    venv = q(f"{s.venvs}/{venv_hash}")
    lines = [f"release={q(release)}", 'rm -rf "$release"', 'install -d -m 0755 "$release"',
             *unpack, *link_shared(s), build_function(s, venv)]
    if not (build_venv or s.build_command):
        return lines + private(s) + markers(s, tree_hash, venv_hash, release)
    build = f"{q(s.build_user)}:{q(s.build_user)}"
    lines += [f'chown -hR {build} "$release"']
    if build_venv:
        # Debian's pip wheel, run by the venv's python, installs into the venv: no pip is
        # copied into every venv (ensurepip alone takes ~4 s of a fresh provision).
        # gunicorn is the tool's: an app that pins its own keeps its pin.
        pip = '-q --disable-pip-version-check -r "$release/requirements.txt" $extra'
        lines += [f"extra={q(s.packages)}",
                  *[f"grep -qiE '^[[:space:]]*{name}([^A-Za-z0-9_.-]|$)' "
                    f'"$release/requirements.txt" || extra="$extra {pin}"'
                    for pin, name in unless_listed(s)],
                  "set -f  # $extra is split into requirements, never globbed",
                  f"rm -rf {venv}",
                  f"install -d -o {q(s.build_user)} -g {q(s.build_user)} -m 0755 {venv}",
                  "whl=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | tail -n1)",
                  'if [ -n "$whl" ]; then',
                  f"  build python3 -m venv --without-pip {venv}",
                  f'  build {venv}/bin/python "$whl/pip" install {pip}',
                  "else",
                  f"  build python3 -m venv {venv}",
                  f"  build {venv}/bin/pip install {pip}",
                  "fi",
                  *seal(venv),
                  f"du -sk {venv} | cut -f1 > {venv}/.fab-complete"]  # its size: tasks.space
    if s.build_command:
        scratch_dirs = " ".join(f'"$scratch"/{q(p)}' for p, is_dir in s.shared_items if is_dir)
        lines += [f"scratch={q(s.build_scratch)}", 'rm -rf "$scratch"',
                  f'install -d -o {q(s.build_user)} -g {q(s.build_user)} -m 0700 "$scratch"',
                  *([f"mkdir -p {scratch_dirs}"] if scratch_dirs else []),
                  f'chown -R {build} "$scratch"',
                  *link_shared(s, '"$scratch"'),
                  f"build sh -c {q(for_systemd(s.build_command))} "
                  '|| { rc=$?; rm -rf "$scratch"; exit $rc; }',
                  'rm -rf "$scratch"',
                  *link_shared(s, q(s.shared))]
    return lines + seal('"$release"') + private(s) + markers(s, tree_hash, venv_hash, release)


def private(s):
    """The release_script lines that make "$release" the app's to read and no other local
    account's (its code may hold what is not for `www-data` or `nobody`), but for the
    static folder nginx serves: readable, and the folders above it passable (not
    listable). A link is never followed: the source chose where it points."""
    steps = s.static_dir.split("/")
    above = ['"$release"'] + [f'"$release"/{q("/".join(steps[:i]))}' for i in range(1, len(steps))]
    static = f'"$release"/{q(s.static_dir)}'
    return [f'chown -hR root:{q(s.user)} "$release"', 'chmod -R go-w,o-rwx,ug-s "$release"',
            *[f"[ -L {d} ] || chmod o+x {d}" for d in above],
            f"if [ -d {static} ] && [ ! -L {static} ]; then chmod -R o+rX {static}; fi"]


def markers(s, tree_hash, venv_hash, release):
    """The release's venv link and identity (root:<app user> 0640, like the code), written
    by root over whatever is there. The identity goes last: a release without it is
    half-built (an interrupted run's)."""
    return ['rm -rf "$release/.fab-release" "$release/.fab-release.new" "$release/.venv"',
            f"ln -sfn ../../venvs/{q(venv_hash)} {q(release)}/.venv",
            f"(umask 027; printf '%s\\n' {q(tree_hash)} > \"$release/.fab-release.new\")",
            f'chgrp {q(s.user)} "$release/.fab-release.new"',
            'mv "$release/.fab-release.new" "$release/.fab-release"']


def prune_script(s, keep):
    """Drop old releases (never those in KEEP) and virtualenvs no release uses. Each loses
    its marker first: one removed half-way (a run killed here) is half-built, never a
    release or venv that looks whole but lacks files. Only names of fab's own shapes."""
    keep_args = " ".join(q(k) for k in keep)
    return f"""
cd {q(s.releases)}
ls -1 | grep -xE {q(RELEASE_ID.pattern)} | sort | head -n -{s.keep_releases} | while read -r r; do
  case " {keep_args} " in *" $r "*) continue;; esac
  rm -f -- "$r/.fab-release"; rm -rf -- "$r"
done
cd {q(s.venvs)}
for v in *; do
  case "$v" in *[!0-9a-f]*) continue;; esac
  [ ${{#v}} = 16 ] && [ -d "$v" ] || continue
  used=$(find {q(s.releases)} -mindepth 2 -maxdepth 2 -name .venv -lname "../../venvs/$v")
  [ -n "$used" ] || {{ rm -f -- "$v/.fab-complete"; rm -rf -- "$v"; }}
done
"""


def gunicorn_conf(s):
    return render("gunicorn.conf.py.j2", env_path=s.env_path,
                  database_env_path=s.database_env_path, user=s.user)


def runtime_files(s, facts, said):
    """gunicorn's config and the app's environment file, as changes (SAID by each)."""
    changes = []
    if s.conf_dir not in facts.modes:
        changes.append(Command("", f"install -d -o root -g root -m 0755 {q(s.conf_dir)}"))
    changes += upload(facts, said, s.gunicorn_conf, gunicorn_conf(s))
    if s.env_file:
        env = Path(s.env_file).expanduser().read_text()
        changes += upload(facts, said, s.env_path, env, "root", s.user, "0640", shown=mask)
    elif s.env_path in facts.files:
        changes.append(Command(said, f"rm -f {q(s.env_path)}"))
    return changes


@dataclass(frozen=True)
class Source:
    """The app to ship, as resolved before planning."""

    identity: str  # content hash of a local folder, or the commit of a git source (None:
    #                a git source not fetched yet, because the server has no layout yet)
    venv_hash: str  # hash of its requirements.txt (None: not known yet)
    action: str = ""  # what a dry run would do to get it ("upload 3 files")
    size_kb: int = 0  # the code's size (0: not known before a git source is fetched)
    files: tuple = ()  # a local folder's files that ship (tasks.source.select)


def resolve(h):
    """The Source to ship. A local folder is hashed here; a git source is fetched into the
    server's mirror, whose commit is the identity (a dry run only looks it up, with
    `git ls-remote`; a server without releases fetches when the release is built)."""
    s = h.settings
    if not s.source_is_git:
        chosen = select(s.source_path, s.exclude, s.env_file)
        return Source(content_hash(s.source_path, chosen.files),
                      requirements_hash(s.source_path, s), f"upload {chosen.summary()}",
                      chosen.size // 1024 + 1, tuple(chosen.files))
    if h.dry_run:
        if len(s.ref) == 40 and all(c in "0123456789abcdef" for c in s.ref):
            return Source(s.ref, None, f"fetch {s.source_shown}")
        out = h.read(f"{git_command(s)} ls-remote -- {q(s.git_url)} {q(s.ref)} 2>&1 "
                     "| head -n1 || true")
        sha = out.split()[0] if out.split() and len(out.split()[0]) == 40 else "?" * 8
        return Source(sha, None, f"fetch {s.source_shown} ({s.ref})")
    return fetch(h) if h.facts.current_hash else Source(None, None)


def fetch(h):
    """Fetch the git source into the server's mirror: Source(commit, requirements hash)."""
    s = h.settings
    credentials = s.git_credentials + "\n"
    if s.git_credentials and differs(h.facts, s.git_credentials_path, credentials, mode="0600"):
        h.put(credentials, s.git_credentials_path, mode="0600")
    sha, venv_hash = h.change(git_resolve_script(s), timeout=300).split()
    return Source(sha, venv_hash)


def released(rid, new_venv):
    return f"released {rid}" + (f" with new virtualenv {new_venv}" if new_venv else "")


def ship(h, source, rid=None):
    """Build a release of SOURCE and make it live (checked by a candidate if the app is
    serving); a release that fails on the way is removed. Then prune. Returns what it did."""
    s, f = h.settings, h.facts
    if source.identity is None:
        source = h.source = fetch(h)
    rid = rid or release_id(source.identity)
    build_venv = source.venv_hash not in f.venvs
    previous = f.live_release
    unpack = unpack_commit(s, source.identity) if s.source_is_git else \
        unpack_tarball(h.upload(tarball(s.source_path, source.files)))
    build = "\n".join(["set -e", *release_script(s, unpack, rid, source.identity,
                                                  source.venv_hash, build_venv)])
    try:
        out = h.change(detached(work_unit(s, "build"), build, 900), timeout=960)
        ran = release_phase(h, f"{s.releases}/{rid}")
        if live_release(h) or f.program_state:  # a program to restart, whatever its state
            switch_to(h, rid, previous)
        else:
            first_release(h, rid)
    except DeployError:  # the new release never went live: remove it (and a half-built venv)
        venv = q(f"{s.venvs}/{source.venv_hash}")
        release = q(f"{s.releases}/{rid}")
        h.change(f"rm -f {release}/.fab-release; rm -rf {release}\n"
                 + (f"[ -f {venv}/.fab-complete ] || rm -rf {venv}" if build_venv else ""))
        raise
    h.change(prune_script(s, [rid, previous]), serving_unchanged=True)
    # The build's output is the app's to shape: only the shared paths' own names count.
    names = {path for path, _ in s.shared_items}
    over = [name for name in dict.fromkeys(line.removeprefix("shared over: ")
                                           for line in out.split("\n")) if name in names]
    return released(rid, source.venv_hash if build_venv else None) + (
        f" (the shared {', '.join(over)} replaced the release's own)" if over else "") + ran


# Loads the app's environment exactly as gunicorn does (by running gunicorn's own config
# file), then becomes the command.
WITH_APP_ENV = ("import os, sys; exec(open(sys.argv[1]).read(), {}); "
                "os.execvp(sys.argv[2], sys.argv[2:])")


def as_the_app(s, release, command, timeout=None, terminal=False):
    """A command running COMMAND (shell words) in RELEASE as the app user, the way gunicorn
    runs: its venv first on PATH, the app's environment, cwd the release (shared paths
    linked), in a transient service, killed after TIMEOUT seconds (exit 124) if given, on a
    terminal of its own if TERMINAL (`flask shell`)."""
    return transient(f"{q(release)}/.venv/bin/python -c {q(WITH_APP_ENV)} {q(s.gunicorn_conf)} "
                     + (f"timeout -k 10 {timeout} " if timeout else "") + for_systemd(command),
                     wait=True, io="pty" if terminal else "pipe", user=s.user, cwd=q(release),
                     properties=(f"RuntimeMaxSec={timeout + 30}",) if timeout else (),
                     env=(f"PATH={q(release)}/.venv/bin:/usr/local/bin:/usr/bin:/bin",))


def release_phase(h, release):
    """Run app.release_command in the new RELEASE before any traffic reaches it; a failure
    stops the deploy with the command's output. Returns what the step line adds."""
    s = h.settings
    if not s.release_command:
        return ""
    if getattr(h.c, "release_phase_done", False):
        return " (its release command ran on the first host)"
    backup, undo = "", ""
    # A migration is the one change a rollback cannot undo: keep the data before it.
    if s.local_engine != "none" and "db" in h.facts.database:
        backup = h.change(backup_script(s), timeout=3600).strip().splitlines()[-1]
        undo = f"; the data before it is backed up: fab db.restore --from {backup}"
    elif s.managed_database in ("postgresql", "mysql") and s.database_host:
        with database_host(h) as db:
            backup = db.change(backup_script(s), timeout=3600).strip().splitlines()[-1]
            undo = (f"; the data before it is backed up on {db.name}: "
                    f"fab -H {db.name} db.restore --from {backup}")
    command = as_the_app(s, release, f"sh -c {q(s.release_command)}", s.release_timeout)
    result = h.script(detached(work_unit(s, "release"), command, s.release_timeout + 60),
                      timeout=s.release_timeout + 90)
    if result.exited == 124:
        raise DeployError(f"the release command timed out after {s.release_timeout} s "
                          f"(app.release_timeout); nothing was switched{undo}")
    if result.exited != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-8:]
        raise DeployError(f"the release command `{s.release_command}` failed (exit "
                          f"{result.exited}); nothing was switched{undo}. Its output:\n"
                          + "\n".join("  | " + line for line in output))
    return (f", backed up the database to {backup}" + (f" on {s.roles['db'][0]}" if
            s.database_host else "") if backup else "") + \
        f", ran `{s.release_command}`"


def restart(h):
    """Restart the live app and its processes the covered way (its environment changed)."""
    bridged(h, live_release(h), restart_script(h.settings, h.facts.programs))


def restart_stale(s, facts):
    """[a covered restart of the programs still running another release than the live one
    (a switch interrupted between the link and the restart)], or []."""
    live = facts.live_release
    stale = stale_programs(s, facts.running, live)
    if not (stale and serving(s, facts)):
        return []
    was = ", ".join(sorted(set(stale.values())))
    return [Call(f"restarted {', '.join(stale)} on the live release {live} "
                 f"(they still ran {was}: a switch was interrupted)", restart)]


def leftovers(s, facts):
    """Stopping the candidate an interrupted run left running and removing what it left
    half-built (a release without its marker, a virtualenv without its own), as changes.
    Safe: this run holds the lock, and the work the dead run left going on the server has
    ended (tasks.lock). Only names of the exact shape fab makes are acted on; any other
    is named in the step line and left alone."""
    changes = []
    units = [u for u in facts.candidates if candidate_unit_shape(s.name).fullmatch(u)]
    if units:
        changes.append(Command(f"stopped {', '.join(units)} (an interrupted run's)",
                               "systemctl stop " + " ".join(q(u) for u in units)))
    half = [(line, path) for line, path in map(half_built_path(s), facts.half_built) if path]
    if half:
        changes.append(Command(f"removed what an interrupted run left half-built "
                               f"({', '.join(line for line, _ in half)})",
                               "rm -rf -- " + " ".join(q(path) for _, path in half)))
    return changes


def half_built_path(s):
    """("release ID", its path) for a line of facts.half_built naming a release or venv of
    fab's own shape; (the line, None) for any other."""
    shapes = {"release": (RELEASE_ID, s.releases), "venv": (VENV_HASH, s.venvs)}

    def path(line):
        kind, _, name = line.partition(" ")
        shape, parent = shapes.get(kind, (None, None))
        return line, f"{parent}/{name}" if shape and shape.fullmatch(name) else None
    return path


def strangers(s, facts):
    """A note naming what looks like an interrupted run's leftovers but has a name fab
    never makes: reported, never acted on ([] if none)."""
    odd = [f"unit {u}" for u in facts.candidates if not candidate_unit_shape(s.name).fullmatch(u)]
    odd += [line for line, path in map(half_built_path(s), facts.half_built) if not path]
    return [f"left alone {', '.join(odd)}: not a name fab makes (remove it by hand if it is "
            "not yours)"] if odd else []


DEFAULT_VENV_KB = 100 * 1024  # a Flask app's virtualenv, when none was built here yet
SPARE_KB = 32 * 1024  # for logs and the app's own files while the release goes live


def mb(kb):
    return f"{kb // 1024} MB"


def check_space(s, facts, source, new_venv):
    """Refuse a release that would not fit on the app's filesystem, before anything
    changes: its code, plus a new virtualenv (as large as the largest built here)."""
    if facts.disk is None:
        return
    venv_kb = (max(facts.venvs.values(), default=0) or DEFAULT_VENV_KB) if new_venv else 0
    need = source.size_kb + venv_kb + SPARE_KB
    if facts.disk.free_kb < need:
        raise DeployError(
            f"not enough disk space for a new release: {mb(facts.disk.free_kb)} free where "
            f"{s.dir} lives, about {mb(need)} needed (the code {mb(source.size_kb)}"
            + (f", a new virtualenv ~{mb(venv_kb)}" if venv_kb else "")
            + f", {mb(SPARE_KB)} spare); free some space (`fab releases`; app.keep_releases "
            "keeps fewer) and run again")


def plan(s, facts, source, rid=None):
    """Layout, runtime files, then a new release if SOURCE differs from the live one."""
    refused = refusals(s, facts)
    if refused:
        raise DeployError(refused[0])
    layout = layout_script(s, facts)
    changes = [Command("prepared the app layout" if facts.user_exists
                       else f"created the app's account {s.user}", "\n".join(layout))] \
        if layout else []
    changes += leftovers(s, facts)
    live = facts.live_release
    if source.identity is not None and source.identity == facts.current_hash:
        runtime = runtime_files(s, facts, "updated the app's environment")
        restarts = restart_stale(s, facts)
        if not restarts and runtime and serving(s, facts):
            restarts = [Call("", restart)]
        return Plan(changes + runtime + restarts, ok=f"release {live} is live",
                    notes=strangers(s, facts))
    rid = rid or (release_id(source.identity) if source.identity else "<time>-<commit>")
    new_venv = source.venv_hash if source.venv_hash and source.venv_hash not in facts.venvs \
        else None
    check_space(s, facts, source, new_venv or (source.venv_hash is None))
    would = f"{source.action} as release {rid}" + (
        f" and build virtualenv {new_venv}" if new_venv else "")
    move = moved(s, facts)

    def ship_it(h):
        return ", ".join(filter(None, [ship(h, source, rid if source.identity else None), move]))
    said = ", ".join(filter(None, [released(rid, new_venv), move]))
    return Plan(changes + runtime_files(s, facts, "") + [Call(said, ship_it, would)],
                notes=strangers(s, facts))


def resolve_local(h):
    """A local folder's Source, resolved before the server is read (a git source is
    fetched by the step itself)."""
    if not h.settings.source_is_git:
        h.source = resolve(h)


def app_plan(h):
    if h.source is None:  # a local folder's was resolved before the run (resolve_local)
        h.source = resolve(h)  # kept for the deploy log's revision
    return plan(h.settings, h.facts, h.source)


STEP = Step("app", app_plan,
            "Create the app user and upload the app as a release with its virtualenv.",
            lambda h: h.settings.runs_app, resolve_local, beside_background=True)
