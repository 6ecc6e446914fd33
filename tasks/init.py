"""`fab init`: a commented deploy.yaml for the app in the current folder, from what is there.

Like `kamal init` or `dep init`, it starts the settings file kept with the app. Each
setting it writes says in a comment why it was chosen; what it cannot know (the site's
names, its secrets, a database) stays a commented question. It never overwrites a file.
"""

import ast
import json
import re
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from invoke import Exit, task

from tasks.config import SETTINGS_FILE
from tasks.executor import Local

SKIP = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", "migrations", "tests"}
SQLITE_FILE = re.compile(r"""['"]([\w.-]+\.(?:db|sqlite3?))['"]""")


@dataclass
class Found:
    """What init learned: settings (key -> (value, why)), notes and open questions."""

    settings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    questions: list = field(default_factory=list)  # (question, commented example line)

    def set(self, key, value, why):
        self.settings[key] = (value, why)


def env_lines(path):
    """KEY=VALUE lines of a dotenv file, as a dict (quotes dropped)."""
    out = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and not key.startswith("#"):
                out[key.strip()] = value.strip().strip("'\"")
    return out


def python_files(root, depth=2):
    """The app's own .py files, to DEPTH folders down (not its venv, tests or migrations)."""
    out = sorted(root.glob("*.py"))
    if depth:
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if sub.name not in SKIP and not sub.name.startswith("."):
                out += python_files(sub, depth - 1)
    return out


def entry_in(path, module):
    """`module:app` when PATH makes `app` (or `application`) at module level, or
    `module:create_app()` when it defines a factory (gunicorn calls it); else None."""
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except (SyntaxError, ValueError):
        return None
    names = {t.id for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    for name in ("app", "application"):
        if name in names:
            return f"{module}:{name}"
    factories = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for name in ("create_app", "make_app"):
        if name in factories:
            return f"{module}:{name}()"
    return None


def module_file(root, module):
    """The file that holds dotted MODULE under ROOT, or None."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def find_entry(root, found, flask_app, origin):
    """The WSGI entry: from FLASK_APP (as Flask reads it), else Flask's own guesses
    (wsgi.py, app.py), else the first module that makes an app."""
    if flask_app:
        spec = flask_app.removesuffix(".py").replace("/", ".")
        module, _, attr = spec.partition(":")
        if attr:
            found.set("module", f"{module}:{attr}", f"{origin} sets FLASK_APP={flask_app}")
            return module
        path = module_file(root, module)
        entry = path and entry_in(path, module)
        if entry:
            found.set("module", entry, f"{origin} sets FLASK_APP={flask_app}, and "
                      f"{path.relative_to(root)} makes the app")
            return module
    candidates = [root / "wsgi.py", root / "app.py", *python_files(root, 1)]
    for path in candidates:
        if not path.is_file():
            continue
        rel = path.relative_to(root)
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        entry = entry_in(path, module)
        if entry:
            found.set("module", entry, f"{rel} makes the app ({entry.split(':')[1]})")
            return module
    found.questions.append(("Which module makes the Flask app? (gunicorn's module:variable, "
                            "or module:create_app())", 'module: "myapp:app"'))
    return None


def find_static(root, found, module):
    """The static folder: the entry's package's `static/`, else one at the top or one
    folder down."""
    package = (module or "").split(".")[0]
    candidates = ([root / package / "static"] if package else []) + [root / "static"] + [
        p / "static" for p in sorted(root.iterdir())
        if p.is_dir() and p.name not in SKIP and not p.name.startswith(".")]
    for path in candidates:
        if path.is_dir():
            rel = path.relative_to(root).as_posix()
            found.set("static_dir", rel, f"{rel}/ holds the static files (nginx serves them)")
            return
    found.notes.append("no static/ folder found: nginx serves static_dir (default static) "
                       "if one appears")


def project_of(root):
    """pyproject.toml's [project] table: {} without the file, None if it does not parse."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text()).get("project", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return None


def find_requirements(root, found):
    """requirements.txt, else pyproject.toml's [project] dependencies."""
    listed = ""
    if (root / "requirements.txt").is_file():
        listed = (root / "requirements.txt").read_text(errors="replace")
        found.notes.append("requirements.txt: the release's virtualenv installs it")
    elif (root / "pyproject.toml").is_file():
        project = project_of(root)
        if project is None:
            found.notes.append("pyproject.toml does not parse: fix it before deploying")
            return ""
        if "dependencies" in project.get("dynamic", []):
            found.notes.append("pyproject.toml's dependencies are dynamic: list them in "
                               "requirements.txt, which the virtualenv then installs")
        listed = "\n".join(project.get("dependencies", []))
        found.notes.append("pyproject.toml: the release's virtualenv installs its [project] "
                           "dependencies")
    else:
        found.questions.append(("Where are the app's dependencies? Add requirements.txt or a "
                                "pyproject.toml with [project] dependencies", ""))
    if listed and not re.search(r"(?im)^\s*gunicorn\b", listed):
        found.notes.append("gunicorn is not among the dependencies: fab adds the one it is "
                           "tested with")
    return listed


def find_phases(root, found, procfile, listed, flask_env, sources):
    """The release command (Flask-Migrate, or the Procfile's `release:`) and the build
    command (compiled translations). SOURCES: {path: text} of the app's .py files."""
    if "release" in procfile:
        found.set("release_command", procfile["release"], "the Procfile's release: line")
    elif (root / "migrations" / "env.py").is_file():
        found.set("release_command", "flask db upgrade",
                  "migrations/ is Flask-Migrate's: each deploy applies new migrations once, "
                  "before traffic moves")
        if flask_env and not re.search(r"(?im)^\s*python-dotenv\b", listed):
            found.notes.append("`flask db upgrade` reads FLASK_APP from .flaskenv only with "
                               "python-dotenv installed: add it to the dependencies, or "
                               "FLASK_APP to the env_file")
    translations = sorted(p for p in root.glob("*/translations") if p.is_dir()) + sorted(
        p for p in [root / "translations"] if p.is_dir())
    if translations:
        rel = translations[0].relative_to(root).as_posix()
        command = "flask translate compile" if re.search(
            r"def translate\b|['\"]translate['\"]", "\n".join(sources.values())) \
            else f"pybabel compile -d {rel}"
        found.set("build_command", command, f"{rel}/ holds translations, compiled into each "
                  "release when it is built")


def find_state(root, found, env, sources):
    """What the app writes next to its code (kept in <dir>/shared, across releases): a
    SQLite file, Flask's instance/ folder, a logs/ folder."""
    shared = []
    text = "\n".join(sources.values()) + "\n" + "\n".join(env.values())
    if "sqlite:///" in text:
        files = [m.group(1) for src in sources.values() if "sqlite" in src
                 for m in SQLITE_FILE.finditer(src)]
        direct = re.findall(r"sqlite:///([\w.-]+)(?:['\"\s]|$)", text)
        for name in dict.fromkeys(direct + files):
            if "/" not in name and name not in shared:
                shared.append(name)
    if (root / "instance").is_dir() or "instance_path" in text:
        shared.append("instance/")
    if re.search(r"""(mkdir|makedirs)\(\s*['"]logs['"]|['"]logs/""", text):
        shared.append("logs/")
    if shared:
        found.set("shared_paths", shared, "the app writes these next to its code (SQLite, "
                  "instance/, logs/): kept in <dir>/shared, the same in every release")


def procfile_of(root):
    """The Procfile's process types: {name: command}."""
    out = {}
    path = root / "Procfile"
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            name, sep, command = line.partition(":")
            if sep and re.fullmatch(r"[a-z][a-z0-9_-]*", name.strip()) and command.strip():
                out[name.strip()] = command.strip()
    return out


def detect(root):
    """Found: the settings fab can tell from the app's folder ROOT."""
    found = Found()
    found.set("source", ".", "this folder: what git would ship of it (.gitignore'd files "
              "never ship)")
    name = (project_of(root) or {}).get("name", "")
    slug = re.sub(r"[^a-z0-9_-]+", "-", (name or root.name).lower()).strip("-_")[:32]
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", slug):
        slug = "app"
    found.set("name", slug, "pyproject.toml's [project] name" if name else "this folder's name")
    flask_env, env = env_lines(root / ".flaskenv"), env_lines(root / ".env")
    origin = ".flaskenv" if "FLASK_APP" in flask_env else ".env"
    flask_app = flask_env.get("FLASK_APP") or env.get("FLASK_APP")
    procfile = procfile_of(root)
    module = find_entry(root, found, flask_app, origin)
    web = re.search(r"gunicorn\b.*?\s([\w.]+:[\w.()]+)", procfile.get("web", ""))
    if module is None and web:
        found.set("module", web.group(1), "the Procfile's web: line")
        module = web.group(1).split(":")[0]
    find_static(root, found, module)
    listed = find_requirements(root, found)
    sources = {p: p.read_text(errors="replace") for p in python_files(root)}
    find_phases(root, found, procfile, listed, "FLASK_APP" in flask_env, sources)
    processes = {k: v for k, v in procfile.items() if k not in ("web", "release")}
    if processes:
        found.set("processes", processes, "the Procfile's other process types: programs of "
                  "each release, started and switched with it")
    find_state(root, found, {**flask_env, **env}, sources)
    if (root / ".env").is_file():
        found.set("env_file", ".env", ".env: the app's environment, uploaded root-only "
                  "(never shipped with the code)")
    else:
        found.questions.append(("Which secrets does the app read (SECRET_KEY, ...)? Put them "
                                "in a file kept out of git", "env_file: .env"))
    drivers = {"psycopg": "postgresql", "pymysql": "mysql", "mysqlclient": "mysql"}
    engine = next((e for d, e in drivers.items() if re.search(rf"(?im)^\s*{d}", listed)), None)
    found.questions += [
        ("Which host names does the site answer to? (_ = any)", "server_name: example.com"),
        ("Does the app need a database server of its own? fab sets it up and gives the app "
         "DATABASE_URL" + (f" ({engine}, by its driver)" if engine else ""),
         f"database: {engine or 'postgresql'}"),
        ("Which path answers 200 without a login? fab probes it after each deploy",
         "health_path: /"),
        ("HTTPS: self-signed, letsencrypt (with letsencrypt_email) or custom?",
         "tls: letsencrypt"),
    ]
    return found


def yaml_value(value, indent):
    """VALUE as YAML: strings and lists of strings in JSON's quoting (which YAML reads),
    mappings as indented blocks."""
    if isinstance(value, dict):
        return "".join(f"\n{' ' * (indent + 2)}{k}: {json.dumps(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " [" + ", ".join(json.dumps(v) for v in value) + "]"
    return " " + json.dumps(value)


def comment(text):
    return textwrap.wrap(text, 96, initial_indent="  # ", subsequent_indent="  #   ")


def settings_text(found, root):
    """The commented deploy.yaml for FOUND."""
    lines = [f"# {SETTINGS_FILE}: how fab puts this app into production. `fab init` wrote it "
             "from what it",
             f"# found in {root.name}/; check each guess. Every setting: fab's README, "
             "\"Settings\".",
             "#   fab -H user@server provision    then    fab -H user@server deploy",
             "app:"]
    for key, (value, why) in found.settings.items():
        lines += [*comment(why), f"  {key}:{yaml_value(value, 2)}"]
    for note in found.notes:
        lines += comment(f"note: {note}")
    if found.questions:
        lines += ["", "  # What fab cannot tell from the code:"]
        for question, example in found.questions:
            lines += [*comment(question)] + ([f"  # {example}"] if example else [])
    return "\n".join(lines) + "\n"


@task(klass=Local)
def init(c):
    """Write deploy.yaml for the app in this folder, from what is there (never overwrites)."""
    root = Path.cwd()
    target = root / SETTINGS_FILE
    if target.exists():
        raise Exit(f"{target}: already there; fab init never overwrites it (edit it, or "
                   "move it away and run fab init again)", code=1)
    found = detect(root)
    try:
        with target.open("x") as f:  # never over a file that appeared meanwhile
            f.write(settings_text(found, root))
    except OSError as e:
        raise Exit(f"{target}: cannot write it ({e.strerror or e})", code=1) from None
    print(f"wrote {target}:")
    for key, (value, why) in found.settings.items():
        print(f"  {key}: {value!r}  ({why})")
    print(f"{len(found.questions)} question(s) left in it as comments; then: "
          "fab -H user@server provision && fab -H user@server deploy")
