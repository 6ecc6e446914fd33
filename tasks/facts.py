"""Facts: everything a run needs to know about a server, in one remote command.

Each fact is one field of `Facts`, declared in one place: its type, its default, the
shell that prints it (given the settings, or the stack's Needs) and the parser of those
lines (tasks.readers). `script()` joins every fact's shell into one read-only script whose
output is blocks behind a mark drawn on the server; `parse()` hands each block to its
fact's parser. Both are pure, so planning is tested without a server; adding a fact is
adding a field.
"""

import re
from dataclasses import dataclass, field, fields

from tasks.declared import Needs
from tasks.engines import database_script
from tasks.names import RELEASE_ID, VENV_HASH, listed
from tasks.readers import (
    PROGRAM_STATE,
    SUPERVISOR_SOCKET,
    Account,
    Disk,
    FileFact,
    Ownership,
    Program,
    Service,
    by_last_field,
    disk,
    fact,
    first_line,
    first_values,
    links,
    non_empty,
    number,
    packages,
    programs_running,
    quoted,
    service,
    services_script,
    ssh_port,
    ufw_rule,
    words_by_first,
)
from tasks.shell import PYTHON, DeployError, explain_failure, q
from tasks.units import WORK_DIR, work_unit


@dataclass
class Facts:
    os_id: str = fact(lambda s: '. /etc/os-release 2>/dev/null; echo "$ID"', first_line, "")
    os_like: str = fact(lambda s: '. /etc/os-release 2>/dev/null; echo "$ID_LIKE"',
                        first_line, "")
    packages: dict[str, bool] = fact(  # package -> installed
        lambda n: "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' "
                  f"{' '.join(n.packages)} 2>/dev/null", packages, default_factory=dict,
        of_needs=True)
    apt_age: int | None = fact(  # seconds since the apt lists were refreshed (None: never)
        lambda s: 'newest=$(ls -t /var/lib/apt/lists/*_Packages 2>/dev/null | head -n1)\n'
                  '[ -n "$newest" ] && echo $(( $(date +%s) - $(stat -c %Y "$newest") ))',
        number)
    user_exists: bool = fact(lambda s: f"id -u {q(s.user)} 2>/dev/null", non_empty, False)
    user_groups: set[str] = fact(lambda s: f"id -Gn {q(s.user)} 2>/dev/null",
                                 lambda lines: set(" ".join(lines).split()), default_factory=set)
    user_account: Account | None = fact(  # app.user's comment (fab's says it made it), home
        # and shell
        lambda s: f"getent passwd {q(s.user)} | cut -d: -f5-7",
        lambda lines: Account(*first_line(lines).split(":")) if first_line(lines).count(":") == 2
        else None)
    build_user_exists: bool = fact(lambda s: f"id -u {q(s.build_user)} 2>/dev/null",
                                   non_empty, False)
    program_conf: dict[str, str] = fact(  # user=, directory= and command= of the app's
        # first supervisor program (gunicorn's, on a web host), as the server has it
        lambda s: f"grep -sE '^(user|directory|command)=' {q(s.supervisor_conf)}",
        first_values, default_factory=dict)
    files: dict[str, FileFact] = fact(  # managed file -> checksum, owner, group, mode
        lambda n: f'for f in {quoted(n.files)}; do\n'
                  '  [ -f "$f" ] && echo "$(sha256sum < "$f" | cut -d\' \' -f1) '
                  '$(stat -c \'%U %G %a\' "$f") $f"\ndone',
        lambda lines: by_last_field(lines, FileFact, 5), default_factory=dict, of_needs=True)
    modes: dict[str, Ownership] = fact(  # managed directory -> owner, group, mode
        lambda n: f'for d in {quoted(n.dirs)}; do '
                  '[ -d "$d" ] && echo "$(stat -c \'%U %G %a\' "$d") $d"; done',
        lambda lines: by_last_field(lines, Ownership, 4), default_factory=dict, of_needs=True)
    links: dict[str, str] = fact(  # managed symlink -> its target
        lambda n: f'for l in {quoted(n.links)}; do '
                  '[ -L "$l" ] && echo "$(readlink "$l") $l"; done',
        links, default_factory=dict, of_needs=True)
    live_release: str = fact(  # the release `current` points to ("": none, or not one fab
        # makes)
        lambda s: f'r=$(readlink {q(s.current)}) && r=${{r##*/}} && {listed("r")}',
        lambda lines: first_line(lines) if RELEASE_ID.fullmatch(first_line(lines)) else "", "")
    current_hash: str = fact(  # the source identity of the live release
        lambda s: f"cat {q(s.current)}/.fab-release 2>/dev/null", lambda lines: "".join(
            lines).strip(), "")
    releases: list[str] = fact(  # complete releases (their marker is written last), by id
        lambda s: f'for r in {q(s.releases)}/*/.fab-release; do [ -f "$r" ] || continue; '
                  f'r=${{r%/.fab-release}}; r=${{r##*/}}; {listed("r")}; done',
        lambda lines: sorted(r for r in map(str.strip, lines) if RELEASE_ID.fullmatch(r)),
        default_factory=list)
    venvs: dict[str, int] = fact(  # complete virtualenvs: requirements hash -> size in KB
        lambda s: f'for v in {q(s.venvs)}/*/.fab-complete; do [ -f "$v" ] || continue; '
                  'size=; read -r size < "$v"; case "$size" in *[!0-9]*) size=0;; esac; '
                  f'v=${{v%/.fab-complete}}; v=${{v##*/}}; echo "$({listed("v")}) $size"; '
                  'done',
        lambda lines: {p[0]: int(p[1]) if p[1:] and p[1].isdigit() else 0
                       for p in map(str.split, lines) if p and VENV_HASH.fullmatch(p[0])},
        default_factory=dict)
    half_built: list[str] = fact(  # what an interrupted run left: "release ID", "venv HASH"
        # (names of another shape are listed too: `leftovers` reports them, never acts)
        lambda s: f'for r in {q(s.releases)}/*; do [ -d "$r" ] && [ ! -L "$r" ] && '
                  f'[ ! -f "$r/.fab-release" ] && r=${{r##*/}} && echo "release $({listed("r")})"; '
                  'done\n'
                  f'for v in {q(s.venvs)}/*; do [ -d "$v" ] && [ ! -L "$v" ] && '
                  f'[ ! -f "$v/.fab-complete" ] && v=${{v##*/}} && echo "venv $({listed("v")})"; '
                  'done',
        lambda lines: [line.strip() for line in lines if line.strip()], default_factory=list)
    candidates: list[str] = fact(  # candidate units still loaded (a dead run's, if any),
        # but not one stopping on its own (tasks.switch.candidate); `leftovers` checks shapes
        lambda s: f"for u in /run/systemd/transient/{q(s.name)}-candidate-*.service; do "
                  '[ -e "$u" ] && u=${u##*/} && '
                  f'[ "$(systemctl is-active "$u")" != deactivating ] && {listed("u")}; done',
        lambda lines: [line.strip() for line in lines if line.strip()], default_factory=list)
    disk: Disk | None = fact(  # the filesystem that holds (or will hold) the app's folder
        lambda s: f'd={q(s.dir)}; while [ ! -d "$d" ]; do d=${{d%/*}}; d=${{d:-/}}; done\n'
                  'df -Pk "$d" | awk \'NR == 2 {print $2, $4}\'', disk)
    dpkg_interrupted: bool = fact(  # what apt refuses with "dpkg was interrupted"
        lambda s: "ls -A /var/lib/dpkg/updates 2>/dev/null | head -n1", non_empty, False)
    background: list[str] = fact(  # work started in_background: running, or its result not
        # yet collected (tasks.units.result_file; `.out` exists while it runs)
        lambda s: f'for f in {WORK_DIR}/{work_unit(s, "*")}.result*; do [ -e "$f" ] && '
                  f'f=${{f##*/}} && f=${{f%%.result*}} && {listed("f")}; done | sort -u',
        lambda lines: [line.strip() for line in lines if line.strip()], default_factory=list)
    running: dict[str, Program] = fact(  # the app's programs, gunicorn's first
        # No supervisord (a fresh server's first reads), no Python started to ask it.
        lambda s: f"[ ! -S {SUPERVISOR_SOCKET} ] || "
                  f"{PYTHON} -c {q(PROGRAM_STATE)} {quoted(s.programs)} 2>/dev/null",
        programs_running, default_factory=dict)
    database: set[str] = fact(  # "role", "db": what exists of the app's database
        database_script, lambda lines: {line.strip() for line in lines if line.strip()},
        default_factory=set)
    database_env: dict[str, str] = fact(  # the keys of database.env; DATABASE_URL's scheme
        lambda s: r"sed -n 's/^DATABASE_URL=\([a-z0-9+]*\):.*/DATABASE_URL \1/p; "
                  rf"s/^REDIS_URL=.*/REDIS_URL/p' {q(s.database_env_path)} 2>/dev/null",
        lambda lines: {p[0]: (p[1] if len(p) > 1 else "") for p in map(str.split, lines) if p},
        default_factory=dict)
    database_at: set[str] = fact(  # the hosts database.env's URLs point at
        lambda s: r"sed -n 's|^[A-Z_]*_URL=[a-z0-9+]*://[^@/]*@\([^:/]*\).*|\1|p' "
                  f"{q(s.database_env_path)} 2>/dev/null",
        lambda lines: {line.strip() for line in lines if line.strip()}, default_factory=set)
    database_access: str = fact(  # on the database host: whom it listens to (access_script)
        lambda s: f"cat {q(s.database_access_path)} 2>/dev/null" if s.database_server else "",
        lambda lines: "\n".join(line.strip() for line in lines if line.strip()), "")
    redis_configured: bool = fact(  # the app's own Redis has its file, with a password
        lambda s: f"grep -qs '^requirepass ' {q(s.redis_conf)} && echo yes", non_empty, False)
    services: dict[str, Service] = fact(lambda n: services_script(n.services),
                                        lambda lines: words_by_first(lines, service),
                                        default_factory=dict, of_needs=True)
    programs: list[str] = fact(  # the supervisor programs in the app's file
        lambda s: f"sed -n 's/^\\[program:\\(.*\\)\\]$/\\1/p' {q(s.supervisor_conf)} 2>/dev/null",
        lambda lines: [line.strip() for line in lines if line.strip()], default_factory=list)
    ufw_active: bool = fact(lambda s: "grep -qs '^ENABLED=yes' /etc/ufw/ufw.conf && echo yes",
                            non_empty, False)
    ufw_rules: set[str] = fact(  # plain allow/deny port rules from anywhere: "allow 80/tcp"
        lambda s: "grep -hs '^### tuple ###' /etc/ufw/user.rules /etc/ufw/user6.rules",
        lambda lines: {rule for rule in map(ufw_rule, lines) if rule}, default_factory=set)
    other_tls_sites: bool = fact(  # another enabled nginx site listens on 443
        lambda s: "grep -lsE '^[[:space:]]*listen[^;]*443' /etc/nginx/sites-enabled/* | "
                  f"grep -vxF {q(s.nginx_enabled)}", non_empty, False)
    job_units: set[str] = fact(  # app.schedule's unit files there: fab:<name>:<job>.timer
        lambda s: "ls -1 /etc/systemd/system 2>/dev/null | grep -xE "
                  + q(re.escape(s.job_unit("")) + r"[a-z][a-z0-9_-]*\.(service|timer)"),
        set, default_factory=set)
    offsite: str = fact(  # what the backup host was set up for (tasks.steps.offsite.marker)
        lambda s: f"cat {q(s.backup_file('offsite'))} 2>/dev/null" if s.offsite else "",
        first_line, "")
    offsite_failed: bool = fact(  # the last push failed (a run then sets the host up again)
        lambda s: f"ls {q(s.offsite_stamp)}.failed 2>/dev/null" if s.offsite else "",
        non_empty, False)
    maintenance: bool = fact(lambda s: f"[ -f {q(s.maintenance_switch)} ] && echo on",
                             non_empty, False)  # fab maintenance on
    ssh_port: int = fact(lambda s: 'echo "${FAB_SSH:-}"', ssh_port, 22)
    needs: Needs = field(default_factory=Needs)  # what they were read for (not a fact)

    @property
    def debian_like(self):
        return self.os_id in ("debian", "ubuntu") or "debian" in self.os_like.split()

    @property
    def program(self):
        """gunicorn's program (the first of `running`)."""
        return next(iter(self.running.values()), Program("", 0))

    @property
    def program_state(self):
        return self.program.state

    @property
    def program_pid(self):
        return self.program.pid

    def service(self, unit):
        return self.services.get(unit, Service("missing", ""))


FACTS = {f.name: f.metadata["fact"] for f in fields(Facts) if "fact" in f.metadata}


def fact_of(name):
    """The Fact (shell, parser) of the field NAME, for other scripts that read it too."""
    return FACTS[name]


# The first line of a fact script's answer is its mark: "@@" and 24 random hex digits, drawn
# by root on the server and printed before anything else runs. Only lines that begin with
# the mark start a block, so no value printed later (an app's working folder, a program's
# output) can start or replace one.
MARK_RE = re.compile(r"@@[0-9a-f]{24}")
NEW_MARK = "mark=@@$(od -An -N12 -tx1 /dev/urandom | tr -d ' \\n'); echo \"$mark\""


def framed(blocks):
    """One script printing each (name, shell) of BLOCKS as a block behind the run's mark."""
    return "\n".join([NEW_MARK, *(f'echo "$mark {name}"\n{shell}' for name, shell in blocks),
                      "true\n"])


def script(s, needs, before=""):
    """The one read-only command that gathers every fact of a run (run as root) for the
    stack's NEEDS; BEFORE, when given, runs first as the block `before` (taking the lock)."""
    return framed(([("before", before)] if before else [])
                  + [(name, f.shell(needs if f.of_needs else s)) for name, f in FACTS.items()])


def sections(text):
    """{name: lines} of the blocks of a `framed` script's answer. Lines split at "\\n"
    only: a carriage return inside a value never starts a line. What a login shell's own
    start-up files print before the script runs comes before the mark, and is skipped."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if MARK_RE.fullmatch(line.strip())), None)
    if start is None:
        raise DeployError("the server's answer to fab's facts has no mark: was it cut short? "
                          f"(it began {lines[0][:40]!r})")
    mark, out, current = lines[start].strip() + " ", {}, None
    for line in lines[start + 1:]:
        if line.startswith(mark):
            current = line[len(mark):]
            if current in out:
                raise DeployError(f"the server's answer to fab's facts has block {current!r} "
                                  "twice")
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def parse(text, needs=None):
    """Facts from the output of `script()`; a missing block keeps its fact's default."""
    sec = sections(text)
    return Facts(**{name: f.parse(sec[name]) for name, f in FACTS.items() if name in sec},
                 needs=needs or Needs())


def gather(h, needs, before=""):
    """Run the fact script for the stack's NEEDS on the host (one round trip) and keep the
    parsed facts. BEFORE, when given, is a script run first in the same command (taking
    the lock): returns its output lines; else the facts."""
    # $SSH_CONNECTION is expanded by the login shell, before sudo resets the environment.
    text = script(h.settings, needs, before)
    result = h.execute(f'env FAB_SSH="$SSH_CONNECTION" sh -c {q(text)}', sudo=True)
    if result.exited != 0:
        raise DeployError(explain_failure(result))
    h.facts = parse(result.stdout, needs)
    return sections(result.stdout).get("before", []) if before else h.facts
