"""The app's local folder as it ships: what git would ship, never its secrets.

A file ships unless a rule leaves it out. The rules, each later one winning where it
matches (as in git, a folder left out is not looked into):

1. the folder's `.gitignore` files, each for the paths below it, outer ones first;
2. fab's own: caches and virtualenvs, and the usual names of secrets and local state
   (`.env`, Flask's `instance/`, keys, SQLite files): they never ship by accident;
3. `app.exclude`: the operator's patterns, in .gitignore syntax (`!data/geo.db` brings
   a file back);

and `app.env_file`, when it sits inside the folder, is the app's environment, never code.

A `Source` is the app to ship as a deploy sees it: a local folder's content hash, or a git
source's commit (fetched into a mirror on the server), and the hash of what its virtualenv
holds (requirements.txt and the extras fab adds).
"""

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pathspec import GitIgnoreSpec

from tasks.engines import ENGINES
from tasks.plan import differs
from tasks.shell import DeployError, q

CACHES = "caches"  # left out without a word
RULES = {CACHES: GitIgnoreSpec.from_lines([".git/", "__pycache__/", ".venv/", "venv/",
                                           ".pytest_cache/", ".mypy_cache/", "node_modules/",
                                           "*.pyc", "*.pyo"]),
         "fab's secret names": GitIgnoreSpec.from_lines([".env", ".env.*", "instance/", "*.pem",
                                                         "*.key", "*.sqlite", "*.sqlite3",
                                                         "*.db"])}


@dataclass
class Selection:
    """The files that ship, and how many each rule left out."""

    root: Path
    files: list = field(default_factory=list)
    left_out: dict = field(default_factory=dict)  # rule -> [relative paths]

    @cached_property  # the summary and the Source both ask: one pass of lstat
    def size(self):
        return sum(f.lstat().st_size for f in self.files)

    def summary(self):
        """`12 files, 34 KB; left out: instance/, .env (fab's secret names); 5 by .gitignore`"""
        kb = self.size // 1024 + 1
        parts = [f"{len(paths)} by {rule}" if len(paths) > 3 else
                 f"{', '.join(paths)} ({rule})" for rule, paths in self.left_out.items()]
        return f"{len(self.files)} files, {kb} KB" + (f"; left out: {'; '.join(parts)}"
                                                      if parts else "")


def select(root, exclude="", env_file=None):
    """The Selection of ROOT's files and links, sorted. A link is kept as a link (never
    read through), and only if it resolves inside the folder.

    Example: `select("~/src/shop", exclude="docs/ *.psd").files`"""
    root = Path(root)
    if not root.is_dir():
        raise DeployError(f"the app folder {root} does not exist (set app.source)")
    real_root = Path(os.path.realpath(root))
    env = Path(os.path.realpath(Path(env_file).expanduser())) if env_file else None
    rules = {**RULES, "app.exclude": GitIgnoreSpec.from_lines(exclude.split())}
    ignores = []  # (folder relative to root, its .gitignore's spec), outer first
    chosen = Selection(root)

    def left_out(rel, is_dir):
        """The rule that leaves REL out (the last one matching decides), or None."""
        name, verdict = rel + "/" if is_dir else rel, None
        layers = [(".gitignore", base, spec) for base, spec in ignores
                  if base == "" or name.startswith(base + "/")]
        for rule, base, spec in layers + [(rule, "", spec) for rule, spec in rules.items()]:
            include = spec.check_file(name[len(base) + 1:] if base else name).include
            verdict = verdict if include is None else (rule if include else None)
        if verdict and verdict != CACHES:
            chosen.left_out.setdefault(verdict, []).append(name)
        return verdict

    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        base = here.relative_to(root).as_posix().removeprefix(".")
        if ".gitignore" in filenames:
            lines = (here / ".gitignore").read_text(errors="replace").splitlines()
            ignores.append((base, GitIgnoreSpec.from_lines(lines)))
        links = [d for d in dirnames if (here / d).is_symlink()]
        dirnames[:] = [d for d in sorted(dirnames) if d not in links
                       and not left_out(f"{base}/{d}".lstrip("/"), True)]
        for name in sorted(filenames + links):
            path, rel = here / name, f"{base}/{name}".lstrip("/")
            if env and not path.is_symlink() and Path(os.path.realpath(path)) == env:
                chosen.left_out.setdefault("app.env_file", []).append(rel)
                continue
            if left_out(rel, False):
                continue
            if path.is_symlink():
                check_link(root, real_root, path)
            chosen.files.append(path)
    chosen.files.sort()
    return chosen


def check_link(root, real_root, path):
    """Refuse a link that leaves the app folder, resolved as the server would (a chain of
    links, `..` through one): its target would be uploaded and served."""
    link = os.readlink(path)
    target = Path(os.path.realpath(path))
    if os.path.isabs(link) or not target.is_relative_to(real_root):
        raise DeployError(f"app.source: {path.relative_to(root)} links to {link}, "
                          "outside the app folder: copy the file in, or remove the link")


def content_hash(root, files):
    """A hash of the app's paths, exec bits and bytes (a link's target): equal trees, equal
    hashes."""
    digest = hashlib.sha256()
    for path in files:
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest.update(f"{rel}\0link\0{os.readlink(path)}\0".encode())
            continue
        digest.update(f"{rel}\0{os.access(path, os.X_OK)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def tarball(root, files):
    """A gzip tarball of FILES (below ROOT) with normalised owners, modes and times."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in files:
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.mtime, info.uid, info.gid = 0, 0, 0
            if path.is_symlink():
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
                tar.addfile(info)
                continue
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


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


GUNICORN = "gunicorn==23.0.0"  # what the tool is tested with, for apps that do not pin one


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
