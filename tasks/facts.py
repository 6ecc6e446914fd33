"""Facts: everything a run needs to know about a server, in one remote command.

`script()` builds a read-only shell script whose output is a series of
`@@section` blocks; `parse()` turns that text into a `Facts` object. Both are
pure, so planning is tested without a server.
"""

import posixpath
from dataclasses import dataclass, field

from tasks.core import DeployError, explain_failure, q

PACKAGES = ("python3-venv", "nginx", "supervisor", "ufw")
TLS_PACKAGES = {"self-signed": ("openssl",), "custom": ("openssl",),
                "letsencrypt": ("openssl", "certbot")}
SERVICES = ("nginx", "supervisor", "ufw")


@dataclass
class FileFact:
    sha256: str
    owner: str
    group: str
    mode: str


@dataclass
class Facts:
    os_id: str = ""
    os_like: str = ""
    packages: dict = field(default_factory=dict)
    apt_age: int = None
    user_exists: bool = False
    files: dict = field(default_factory=dict)
    modes: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    current: str = ""
    current_hash: str = ""
    releases: list = field(default_factory=list)
    venvs: set = field(default_factory=set)
    program_state: str = ""
    program_pid: int = 0
    services: dict = field(default_factory=dict)
    ufw_active: bool = False
    ufw_rules: set = field(default_factory=set)
    ssh_port: int = 22

    @property
    def debian_like(self):
        return self.os_id in ("debian", "ubuntu") or "debian" in self.os_like.split()


# supervisorctl (and ufw) are Python programs that take a quarter of a second to start;
# asking supervisord over its socket and reading ufw's own files keeps facts fast.
PROGRAM_STATE = """\
import http.client, socket, sys, xmlrpc.client
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/var/run/supervisor.sock")
class Transport(xmlrpc.client.Transport):
    def make_connection(self, host):
        return Unix("localhost")
rpc = xmlrpc.client.ServerProxy("http://localhost", Transport())
info = rpc.supervisor.getProcessInfo(sys.argv[1])
print(info["name"], info["statename"], "pid", str(info["pid"]) + ",")
"""


def wanted_packages(s):
    return PACKAGES + TLS_PACKAGES.get(s.tls, ()) + (("git",) if s.source_is_git else ())


def managed_files(s):
    tls = [s.tls_cert_path, s.tls_key_path] if s.tls != "off" else []
    return [s.supervisor_conf, s.nginx_site, s.gunicorn_conf, s.env_path, *tls]


def ancestors(path):
    """The directories nginx must traverse to reach PATH, from / down."""
    out = []
    while path not in ("/", ""):
        path = posixpath.dirname(path)
        if path != "/":
            out.append(path)
    return list(reversed(out))


def script(s):
    """The one read-only command that gathers every fact of a run (run as root)."""
    files = " ".join(q(p) for p in managed_files(s))
    dirs = " ".join(q(p) for p in [*ancestors(s.dir), s.dir, s.releases, s.venvs, s.log_dir,
                                   s.conf_dir])
    links = " ".join(q(p) for p in (s.nginx_enabled, "/etc/nginx/sites-enabled/default", s.current,
                                    f"{s.current}/.venv"))
    return f"""
echo @@os; . /etc/os-release 2>/dev/null; echo "$ID"; echo "$ID_LIKE"
echo @@packages
dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' {' '.join(wanted_packages(s))} 2>/dev/null
echo @@apt_age; newest=$(ls -t /var/lib/apt/lists/*_Packages 2>/dev/null | head -n1)
[ -n "$newest" ] && echo $(( $(date +%s) - $(stat -c %Y "$newest") ))
echo @@user; id -u {q(s.user)} 2>/dev/null
echo @@files; for f in {files}; do
  [ -f "$f" ] && echo "$(sha256sum < "$f" | cut -d' ' -f1) $(stat -c '%U %G %a' "$f") $f"
done
echo @@modes; for d in {dirs}; do [ -d "$d" ] && echo "$(stat -c '%U %G %a' "$d") $d"; done
echo @@links; for l in {links}; do [ -L "$l" ] && echo "$(readlink "$l") $l"; done
echo @@current_hash; cat {q(s.current)}/.fab-release 2>/dev/null
echo @@releases; ls -1 {q(s.releases)} 2>/dev/null
echo @@venvs
for v in {q(s.venvs)}/*/.fab-complete; do [ -f "$v" ] && basename "$(dirname "$v")"; done
echo @@program; python3 -c {q(PROGRAM_STATE)} {q(s.name)} 2>/dev/null
echo @@services; for u in {' '.join(SERVICES)}; do
  e=$(systemctl is-enabled $u 2>/dev/null); echo "$u ${{e:-missing}} $(systemctl is-active $u)"
done
echo @@ufw_status; grep -qs '^ENABLED=yes' /etc/ufw/ufw.conf && echo "Status: active"
echo @@ufw_rules; grep -hs '^### tuple ###' /etc/ufw/user.rules /etc/ufw/user6.rules
echo @@ssh; echo "${{FAB_SSH:-}}"
true
"""


def sections(text):
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


ANYWHERE = ("0.0.0.0/0", "::/0")


def ufw_rule(line):
    """`allow 80/tcp` from a `### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in` line of
    ufw's user.rules (None for rules that are not plain port rules from anywhere)."""
    parts = line.split()[3:]
    if len(parts) < 6 or parts[3] not in ANYWHERE or parts[4] != "any" \
            or parts[5] not in ANYWHERE:
        return None
    action, proto, port = parts[:3]
    return f"{action} {port}/{proto}" if proto != "any" else f"{action} {port}"


def parse(text):
    """Facts from the output of `script()`."""
    sec = sections(text)
    f = Facts()
    os_lines = sec.get("os", []) + ["", ""]
    f.os_id, f.os_like = os_lines[0].strip(), os_lines[1].strip()
    for line in sec.get("packages", []):
        parts = line.split()
        if len(parts) >= 2:
            f.packages[parts[0]] = parts[1].startswith("ii")
    age = "".join(sec.get("apt_age", [])).strip()
    f.apt_age = int(age) if age.lstrip("-").isdigit() else None
    f.user_exists = bool("".join(sec.get("user", [])).strip())
    for line in sec.get("files", []):
        parts = line.split(" ", 4)
        if len(parts) == 5:
            f.files[parts[4]] = FileFact(parts[0], parts[1], parts[2], parts[3])
    for line in sec.get("modes", []):
        parts = line.split(" ", 3)
        if len(parts) == 4:
            f.modes[parts[3]] = (parts[0], parts[1], parts[2])
    for line in sec.get("links", []):
        target, _, path = line.rpartition(" ")
        if path:
            f.links[path] = target
    f.current_hash = "".join(sec.get("current_hash", [])).strip()
    f.releases = sorted(r.strip() for r in sec.get("releases", []) if r.strip())
    f.venvs = {v.strip() for v in sec.get("venvs", []) if v.strip()}
    program = " ".join(sec.get("program", [])).split()
    if len(program) >= 2:
        f.program_state = program[1]
        if "pid" in program:
            f.program_pid = int(program[program.index("pid") + 1].rstrip(","))
    for line in sec.get("services", []):
        parts = line.split()
        if len(parts) >= 2:
            f.services[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    f.ufw_active = "Status: active" in " ".join(sec.get("ufw_status", []))
    f.ufw_rules = {rule for rule in map(ufw_rule, sec.get("ufw_rules", [])) if rule}
    ssh = "".join(sec.get("ssh", [])).split()
    if len(ssh) == 4 and ssh[3].isdigit():
        f.ssh_port = int(ssh[3])
    return f


def gather(h):
    """Run the fact script on the host (one round trip) and keep the parsed facts."""
    # $SSH_CONNECTION is expanded by the login shell, before sudo resets the environment.
    command = f'env FAB_SSH="$SSH_CONNECTION" sh -c {q(script(h.settings))}'
    result = h.execute(command, sudo=True)
    if result.exited != 0:
        raise DeployError(explain_failure(result))
    h.facts = parse(result.stdout)
    return h.facts
