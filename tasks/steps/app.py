"""Step 3: the app user, the app's tree and environment, and a new release when the app
changed: uploaded, built (tasks.release), its release phase run (tasks.release_phase),
switched to (tasks.switch) and old ones pruned, each a named change of the step's plan."""

import posixpath
from dataclasses import dataclass
from pathlib import Path

from tasks.accounts import SUDO_GROUPS, account_comment, foreign_user, system_account
from tasks.declared import Needs
from tasks.facts import gather as gather_facts
from tasks.installer import FALLBACK
from tasks.names import RELEASE_ID, VENV_HASH
from tasks.names import candidate_unit as candidate_unit_shape
from tasks.plan import Call, Command, Plan, Step, mask, upload
from tasks.release import prune_script, release_id, release_script, unpack_commit, unpack_tarball
from tasks.release_phase import release_phase
from tasks.revision import Source, fetch, resolve
from tasks.shell import DeployError, q
from tasks.source import tarball
from tasks.switch import (
    first_release,
    live_release,
    restart,
    serving,
    stale_programs,
    switch_to,
)
from tasks.templates import render
from tasks.units import detached, work_unit


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


PRUNE_FAILED = "fab: old releases could not be pruned"


def released(rid, new_venv):
    return f"released {rid}" + (f" with new virtualenv {new_venv}" if new_venv else "")


@dataclass
class Shipment:
    """A new release on its way live, as the app step's named changes: upload (or fetch),
    build (venv, build command, sealed root's), release phase, switch, prune. What one
    change learns (the source fetched, the tarball's path) the next one uses; a release
    that fails before it is live is removed (`cleanup`)."""

    source: Source
    rid: str
    new_venv: str = None  # the venv hash to build, if the server lacks it
    previous: str = ""  # the live release before this one
    tarball: str = ""
    built: bool = False
    live: bool = False

    def changes(self, s):
        rid, venv = self.rid, f" and virtualenv {self.new_venv}" if self.new_venv else ""
        return [
            Call("", self.upload, f"{self.source.action} as release {rid}"),
            Call(released(rid, self.new_venv), self.build,
                 f"build release {rid}{venv} as {s.build_user}, then seal it root's"),
            *([Call("", self.release_phase, f"run `{s.release_command}` in it before traffic "
                    "moves" + (" (the database backed up first)" if s.managed_database != "none"
                               else ""))] if s.release_command else []),
            Call("", self.switch, f"switch to release {rid}, checked by a candidate"),
            Call("", self.prune, f"keep the newest {s.keep_releases} releases"),
        ]

    def upload(self, h):
        s = h.settings
        if self.source.identity is None:  # a git source, fetched now the server has a layout
            self.source = h.source = fetch(h)
            self.rid = release_id(self.source.identity)
        if self.source.venv_hash not in h.facts.venvs:
            self.new_venv = self.source.venv_hash
        if not s.source_is_git:
            self.tarball = h.upload(tarball(s.source_path, self.source.files))

    def build(self, h):
        s, source = h.settings, self.source
        unpack = unpack_commit(s, source.identity) if s.source_is_git else \
            unpack_tarball(self.tarball)
        script = "\n".join(["set -e", *release_script(s, unpack, self.rid, source.identity,
                                                       source.venv_hash, bool(self.new_venv))])
        self.built = True
        out = h.change(detached(work_unit(s, "build"), script, 900), timeout=960)
        # The build's output is the app's to shape: only the shared paths' own names count,
        # and the installer's one line, whole.
        lines = out.split("\n")
        names = {path for path, _ in s.shared_items}
        over = [name for name in dict.fromkeys(line.removeprefix("shared over: ")
                                               for line in lines) if name in names]
        return released(self.rid, self.new_venv) + (
            f" (the shared {', '.join(over)} replaced the release's own)" if over else "") + (
            " (uv could not be installed here: pip built it)" if FALLBACK in lines else "")

    def release_phase(self, h):
        return release_phase(h, f"{h.settings.releases}/{self.rid}")

    def switch(self, h):
        if live_release(h) or h.facts.program_state:  # a program to restart, whatever its state
            switch_to(h, self.rid, self.previous)
        else:
            first_release(h, self.rid)
        self.live = True

    def prune(self, h):
        """Prune, and read the facts for the later steps in the same round trip: the run
        reads them again after a step that changed something, and nothing pruned is theirs."""
        prune = prune_script(h.settings, [self.rid, self.previous])
        lines = gather_facts(h, h.facts.needs,
                             f"( set -e\n{prune}\n) 2>&1 || echo {q(PRUNE_FAILED)}")
        if PRUNE_FAILED in lines:
            said = [line for line in lines if line.strip() and line != PRUNE_FAILED]
            raise DeployError(f"{PRUNE_FAILED}: {said[-1][:200] if said else 'no reason given'}")
        h.facts_fresh = True

    def cleanup(self, h):
        """Remove the release (and a venv it was building) if it never went live."""
        if not self.built or self.live:
            return
        s = h.settings
        venv = q(f"{s.venvs}/{self.source.venv_hash}")
        release = q(f"{s.releases}/{self.rid}")
        h.change(f"rm -f {release}/.fab-release; rm -rf {release}\n"
                 + (f"[ -f {venv}/.fab-complete ] || rm -rf {venv}" if self.new_venv else ""))


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
    # The live release's venv: app.packages (or the driver, or the tool's gunicorn) changed
    # with the code unchanged still needs a release with the new venv.
    live_venv = facts.links.get(f"{s.current}/.venv", "").rpartition("/")[2]
    same_venv = source.venv_hash is None or live_venv in ("", source.venv_hash)
    if source.identity is not None and source.identity == facts.current_hash and same_venv:
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
    shipment = Shipment(source, rid, new_venv, facts.live_release)
    ship = shipment.changes(s)
    ship[-2].said = moved(s, facts)  # the switch moves an earlier version's deployment
    return Plan(changes + runtime_files(s, facts, "") + ship, notes=strangers(s, facts),
                cleanup=shipment.cleanup)


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
