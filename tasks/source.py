"""The app's local folder as it ships: what git would ship, never its secrets.

A file ships unless a rule leaves it out. The rules, each later one winning where it
matches (as in git, a folder left out is not looked into):

1. the folder's `.gitignore` files, each for the paths below it, outer ones first;
2. fab's own: caches and virtualenvs, and the usual names of secrets and local state
   (`.env`, Flask's `instance/`, keys, SQLite files): they never ship by accident;
3. `app.exclude`: the operator's patterns, in .gitignore syntax (`!data/geo.db` brings
   a file back);

and `app.env_file`, when it sits inside the folder, is the app's environment, never code.
"""

import hashlib
import io
import os
import tarfile
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pathspec import GitIgnoreSpec

from tasks.shell import DeployError

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


def dependencies_file(root):
    """The file listing the app's dependencies: requirements.txt, else pyproject.toml (its
    [project] dependencies, which must be listed there, not dynamic)."""
    root = Path(root)
    if not root.is_dir():
        raise DeployError(f"{root}: no such folder")
    if (root / "requirements.txt").is_file():
        return root / "requirements.txt"
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        raise DeployError(f"{root}: no requirements.txt or pyproject.toml: list the app's "
                          "dependencies in one of them")
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DeployError(f"{pyproject}: not valid TOML ({e})") from None
    if "dependencies" in project.get("dynamic", []):
        raise DeployError(f"{pyproject}: its dependencies are dynamic; list them in "
                          "[project] dependencies or in requirements.txt")
    return pyproject
