"""The revision of the app a deploy ships, as a `Source`: a local folder's content hash or a
git source's commit (fetched into a mirror on the server), and the hash of what its
virtualenv holds (requirements.txt, or pyproject.toml's dependencies, and the extras fab
adds)."""

import hashlib
from dataclasses import dataclass

from tasks.engines import ENGINES
from tasks.once import once
from tasks.plan import differs
from tasks.shell import q
from tasks.source import content_hash, dependencies_file, select


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
    """The venv's identity: the dependencies' file (requirements.txt, else pyproject.toml)
    and the extras (`extras_line`)."""
    data = dependencies_file(root).read_bytes() + extras_line(s)
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
    of its dependencies (the same hash `requirements_hash` gives for a local folder).

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
deps=requirements.txt
git -C {m} cat-file -e "$sha:$deps" 2>/dev/null || deps=pyproject.toml
git -C {m} cat-file -e "$sha:$deps" 2>/dev/null || {{
  echo "no requirements.txt or pyproject.toml at {s.ref} ($sha) in {s.source_shown}" >&2
  exit 1; }}
extras={q(extras_line(s).decode().lstrip(chr(10)))}
echo "$sha $({{ git -C {m} show "$sha:$deps"; printf '\\n%s' "$extras"; }} \\
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


def local_source(s):
    """The Source of the local folder app.source: its files chosen and hashed."""
    chosen = select(s.source_path, s.exclude, s.env_file)
    return Source(content_hash(s.source_path, chosen.files), requirements_hash(s.source_path, s),
                  f"upload {chosen.summary()}", chosen.size // 1024 + 1, tuple(chosen.files))


def resolve(h):
    """The Source to ship. A local folder is hashed here; a git source is fetched into the
    server's mirror, whose commit is the identity (a dry run only looks it up, with
    `git ls-remote`; a server without releases fetches when the release is built)."""
    s = h.settings
    if not s.source_is_git:
        return once(("folder", s.source_path, s.exclude, s.env_file, extras_line(s)),
                    lambda: local_source(s))
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
