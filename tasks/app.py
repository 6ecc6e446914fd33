"""Step 2: the app user, the app's code as a release, its virtualenv and its environment.

Layout on the server (Capistrano-style, so rollback is a symlink switch):

    <dir>/releases/<UTC time>-<content hash>/   the code, owned by root, read-only to the app
    <dir>/venvs/<requirements hash>/            one virtualenv per distinct requirements.txt
    <dir>/releases/<id>/.venv -> ../../venvs/<hash>
    <dir>/current -> releases/<id>              switched atomically (rename of a new symlink)
"""

import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

from tasks.core import CHANGED, OK, DeployError, q, render, say
from tasks.deploy import bridged, link_current, live_release, switch_to
from tasks.facts import ancestors
from tasks.files import ensure_file, mask

SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", ".pytest_cache", ".mypy_cache", "node_modules"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def source_files(root):
    """The app's files, sorted, without caches or virtualenvs."""
    root = Path(root)
    if not root.is_dir():
        raise DeployError(f"the app folder {root} does not exist (set app.source)")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(SKIP_SUFFIXES):
                out.append(Path(dirpath, name))
    return out


def content_hash(root):
    """A hash of the app's paths, exec bits and bytes: equal trees, equal hashes."""
    digest = hashlib.sha256()
    for path in source_files(root):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{os.access(path, os.X_OK)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def requirements_hash(root):
    return hashlib.sha256((Path(root) / "requirements.txt").read_bytes()).hexdigest()[:16]


def tarball(root):
    """A gzip tarball of the app with normalised owners, modes and times."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in source_files(root):
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            data = path.read_bytes()
            info.size, info.mtime, info.uid, info.gid = len(data), 0, 0, 0
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def release_id(tree_hash):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + tree_hash[:8]


def layout_script(s, facts):
    """Create the app user and directories; open the path for nginx to traverse."""
    lines = []
    if not facts.user_exists:
        lines.append(f"useradd --create-home --shell /bin/bash {q(s.user)}")
    wanted = [(s.dir, "root", "root", "755"), (s.releases, "root", "root", "755"),
              (s.venvs, "root", "root", "755"), (s.log_dir, "root", s.user, "750")]
    for path, owner, group, mode in wanted:
        if facts.modes.get(path) != (owner, group, mode):
            lines.append(f"install -d -o {owner} -g {q(group)} -m {mode} {q(path)}")
    for d in ancestors(s.dir):
        mode = facts.modes.get(d, ("", "", "0"))[2]
        if int(mode, 8) & 0o001 == 0:
            lines.append(f"chmod o+x {q(d)}")
    return lines


def unpack_tarball(tarball_path):
    """The release_script lines that unpack an uploaded tarball into "$release"."""
    return [f"trap 'rm -f {q(tarball_path)}' EXIT",
            f'tar -xzf {q(tarball_path)} -C "$release" --no-same-owner']


def unpack_commit(s, sha):
    """The release_script lines that export commit SHA of the server's mirror into "$release"."""
    return [f'git -C {q(s.repo_cache)} archive --format=tar {q(sha)} '
            '| tar -x -C "$release" --no-same-owner']


def git_resolve_script(s):
    """Fetch the git source into the server's mirror; print the commit of app.ref and the hash
    of its requirements.txt (the same hash `requirements_hash` gives for a local folder)."""
    m, url = q(s.repo_cache), q(s.source)
    return f"""umask 077
if [ ! -d {m} ]; then
  rm -rf {m}.fab-new
  git clone --quiet --mirror -- {url} {m}.fab-new
  mv {m}.fab-new {m}
else
  git -C {m} remote set-url origin {url}
  git -C {m} fetch --quiet --prune origin
fi
sha=$(git -C {m} rev-parse --verify --quiet {q(s.ref + "^{commit}")}) || {{
  echo "no commit {s.ref} in {s.source}" >&2; exit 1; }}
git -C {m} cat-file -e "$sha:requirements.txt" 2>/dev/null || {{
  echo "no requirements.txt at {s.ref} ($sha) in {s.source}" >&2; exit 1; }}
echo "$sha $(git -C {m} show "$sha:requirements.txt" | sha256sum | cut -c1-16)"
"""


def resolve(h):
    """(release identity, requirements hash, what a dry run would do) of the app to ship.

    A local folder is hashed here; a git source is fetched on the server, whose commit is
    the identity (in a dry run it is only looked up, with `git ls-remote`)."""
    s = h.settings
    if not s.source_is_git:
        action = f"upload {len(source_files(s.source_path))} files" if h.dry_run else ""
        return content_hash(s.source_path), requirements_hash(s.source_path), action
    if h.dry_run:
        if len(s.ref) == 40 and all(c in "0123456789abcdef" for c in s.ref):
            return s.ref, None, f"fetch {s.source}"
        out = h.read(f"git ls-remote -- {q(s.source)} {q(s.ref)} 2>&1 | head -n1 || true")
        sha = out.split()[0] if out.split() and len(out.split()[0]) == 40 else "?" * 8
        return sha, None, f"fetch {s.source} ({s.ref})"
    sha, venv_hash = h.change(git_resolve_script(s), timeout=300).split()
    return sha, venv_hash, ""


def release_script(s, unpack, rid, tree_hash, venv_hash, build_venv):
    """Unpack the app into releases/RID (UNPACK: lines filling "$release") and link its
    virtualenv (built if new)."""
    release = f"{s.releases}/{rid}"
    venv = f"{s.venvs}/{venv_hash}"
    lines = [f"release={q(release)}", 'rm -rf "$release"', 'install -d -m 0755 "$release"',
             *unpack,
             f"printf '%s\\n' {q(tree_hash)} > {q(release)}/.fab-release"]
    if build_venv:
        # Debian's pip wheel, run by the venv's python, installs into the venv: no pip is
        # copied into every venv (ensurepip alone takes ~4 s of a fresh provision).
        pip = f"-q --disable-pip-version-check -r {q(release)}/requirements.txt"
        lines += [f"rm -rf {q(venv)}",
                  "whl=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | tail -n1)",
                  'if [ -n "$whl" ]; then',
                  f"  python3 -m venv --without-pip {q(venv)}",
                  f'  {q(venv)}/bin/python "$whl/pip" install {pip}',
                  "else",
                  f"  python3 -m venv {q(venv)} && {q(venv)}/bin/pip install {pip}",
                  "fi",
                  f"touch {q(venv)}/.fab-complete"]
    lines.append(f"ln -sfn ../../venvs/{q(venv_hash)} {q(release)}/.venv")
    return lines


def prune_script(s, keep):
    """Drop old releases (never those in KEEP) and virtualenvs no release uses."""
    keep_args = " ".join(q(k) for k in keep)
    return f"""
cd {q(s.releases)}
ls -1 | sort | head -n -{s.keep_releases} | while read -r r; do
  case " {keep_args} " in *" $r "*) continue;; esac
  rm -rf -- "$r"
done
cd {q(s.venvs)}
for v in *; do
  [ -d "$v" ] || continue
  used=$(find {q(s.releases)} -mindepth 2 -maxdepth 2 -name .venv -lname "../../venvs/$v")
  [ -n "$used" ] || rm -rf -- "$v"
done
"""


def ensure_runtime_files(h):
    """gunicorn's config and the app's environment file; True if either changed."""
    s, f = h.settings, h.facts
    if s.conf_dir not in f.modes:
        h.change(f"install -d -o root -g root -m 0755 {q(s.conf_dir)}")
    changed = ensure_file(h, s.gunicorn_conf, render("gunicorn.conf.py.j2", env_path=s.env_path,
                                                      user=s.user))
    if s.env_file:
        env = Path(s.env_file).expanduser().read_text()
        changed |= ensure_file(h, s.env_path, env, "root", s.user, "0640", shown=mask)
    elif s.env_path in f.files:
        h.change(f"rm -f {q(s.env_path)}")
        changed = True
    return changed


def converge(h):
    """Layout, runtime files, then a new release if the local app differs from the live one."""
    s, f = h.settings, h.facts
    changes = []
    layout = layout_script(s, f)
    if layout:
        h.change("\n".join(layout))
        changes.append("prepared the app layout" if f.user_exists else f"created user {s.user}")
    runtime_changed = ensure_runtime_files(h)
    tree_hash, venv_hash, action = resolve(h)
    if tree_hash == f.current_hash:
        if runtime_changed:
            live = live_release(h)
            if live and not h.dry_run:
                bridged(h, live, f"supervisorctl restart {q(s.name)} >/dev/null")
            changes.append("updated the app's environment")
        return (CHANGED, ", ".join(changes)) if changes else (OK, "")
    build_venv = venv_hash not in f.venvs
    rid = release_id(tree_hash)
    previous = f.links.get(s.current, "").rpartition("/")[2]
    if h.dry_run:
        say(h.name, f"would {action} as release {rid}"
                    + (f" and build virtualenv {venv_hash}" if build_venv and venv_hash else ""))
    else:
        unpack = unpack_commit(s, tree_hash) if s.source_is_git else \
            unpack_tarball(h.upload(tarball(s.source_path)))
        try:
            h.change("\n".join(release_script(s, unpack, rid, tree_hash, venv_hash, build_venv)),
                     timeout=900)
            if live_release(h):
                switch_to(h, rid, previous)
            else:  # nothing is serving yet: just point `current` at it
                h.change(link_current(s, rid))
        except DeployError:
            if previous:  # the new release never stayed live: remove it
                h.change(f"rm -rf {q(s.releases)}/{q(rid)}")
            raise
        h.change(prune_script(s, [rid, previous]))
    build_venv = build_venv and venv_hash  # unknown in a dry run of a git source
    changes.append(f"released {rid}" + (f" with new virtualenv {venv_hash}" if build_venv else ""))
    return CHANGED, ", ".join(changes)
