"""A release on the server: unpacked, its venv built and its build command run by the build
account in a sandboxed unit, sealed root's, private to the app, marked complete last; and
old ones pruned.

Layout on the server (Capistrano-style, so rollback is a symlink switch):

    <dir>/releases/<UTC time>-<content hash>/   the code, owned by root, read-only to the app
    <dir>/venvs/<requirements hash>/            one virtualenv per distinct requirements.txt
    <dir>/releases/<id>/.venv -> ../../venvs/<hash>
    <dir>/current -> releases/<id>              switched atomically (rename of a new symlink)
"""

import time

from tasks.installer import build_env, install_uv, uv_build, uv_cache
from tasks.names import RELEASE_ID
from tasks.revision import unless_listed
from tasks.shell import for_systemd, q
from tasks.units import transient


def release_id(tree_hash):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + tree_hash[:8]


# A build runs the app's packages' code: it may write only the release (and its venv and
# scratch folder), sees no home, no /tmp, /var/tmp or /dev/shm but its own (gone with it)
# and no other process, gains no privilege (no setuid: no crontab, no at), and everything
# it starts ends with it.
BUILD_SANDBOX = ("NoNewPrivileges=yes", "RestrictSUIDSGID=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "TemporaryFileSystem=/dev/shm:mode=1777",
                 "ProtectProc=invisible", "KillMode=control-group")


def unpack_tarball(tarball_path):
    """The release_script lines that unpack an uploaded tarball into "$release"."""
    return [f"trap 'rm -f {q(tarball_path)}' EXIT",
            f'tar -xzf {q(tarball_path)} -C "$release" --no-same-owner']


def unpack_commit(s, sha):
    """The release_script lines that export commit SHA of the server's mirror into "$release"."""
    return [f'git -C {q(s.repo_cache)} archive --format=tar {q(sha)} '
            '| tar -x -C "$release" --no-same-owner']


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
                f"ReadWritePaths=-{q(s.build_scratch)}", f"ReadWritePaths=-{q(uv_cache(s))}")
    run = transient('"$@"', wait=True, io="pipe", user=s.build_user, cwd='"$release"',
                    properties=("RuntimeMaxSec=900", *env, *BUILD_SANDBOX, *writable),
                    env=(f"PATH={venv}/bin:/usr/local/bin:/usr/bin:/bin", "HOME=/nonexistent",
                         "PIP_NO_CACHE_DIR=1", *build_env(s)))
    return f"build() {{ {run}; }}"


PROJECT_DEPENDENCIES = ("import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', "
                        "'rb')).get('project', {}).get('dependencies', [])))")
# On a failed venv build, the server's Python and what was asked of the installer, for
# tasks.shell.pip_failure to name the package that has no wheel for that Python.
PIP_FAILED = ("pip_failed() { echo \"fab: the venv build failed on the server's "
              "$(python3 -V 2>&1)\" >&2; "
              "sed 's/^/fab: requirement /' \"$reqs\" >&2; exit 1; }")


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
        # uv (tasks.installer), else Debian's pip wheel, run by the venv's python, installs
        # into the venv: no pip is copied into every venv (ensurepip alone takes ~4 s).
        # gunicorn is the tool's: an app that pins its own keeps its pin.
        # A pyproject.toml app's dependencies are its [project] ones (read by the build
        # account): the venv holds what `pip install .` would, the code stays in the release.
        pip = '-q --disable-pip-version-check -r "$reqs" $extra'
        lines += [f"rm -rf {venv}",
                  f"install -d -o {q(s.build_user)} -g {q(s.build_user)} -m 0755 {venv}",
                  'reqs="$release/requirements.txt"',
                  f'[ -f "$reqs" ] || {{ reqs={venv}/.fab-requirements.txt; '
                  f'build python3 -I -c {q(PROJECT_DEPENDENCIES)} > "$reqs"; }}',
                  f"extra={q(s.packages)}",
                  *[f"grep -qiE '^[[:space:]]*{name}([^A-Za-z0-9_.-]|$)' "
                    f'"$reqs" || extra="$extra {pin}"'
                    for pin, name in unless_listed(s)],
                  "whl=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | tail -n1)",
                  "set -f  # $extra is split into requirements, never globbed",
                  PIP_FAILED,
                  *([*install_uv(), 'if [ -n "$uv" ]; then',
                     *uv_build(s, venv, '-r "$reqs" $extra'), 'elif [ -n "$whl" ]; then']
                    if s.installer == "uv" else ['if [ -n "$whl" ]; then']),
                  f"  build python3 -m venv --without-pip {venv}",
                  f'  build {venv}/bin/python "$whl/pip" install {pip} || pip_failed',
                  "else",
                  f"  build python3 -m venv {venv}",
                  f"  build {venv}/bin/pip install {pip} || pip_failed",
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
