"""`fab status`: app, nginx, firewall, release and an HTTP probe per host, in one command each."""

import calendar
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field

from invoke import task

from tasks import steps
from tasks.backups import size_script
from tasks.facts import fact_of, framed, sections
from tasks.health import parse_probe, probe_command
from tasks.readers import services_script
from tasks.run import open_host
from tasks.shell import DeployError, q
from tasks.switch import stale_programs


@dataclass
class Status:
    host: str
    roles: list = field(default_factory=lambda: ["web"])  # app.roles (a balancer: ["lb"])
    app_state: str = ""
    app_pid: int = 0
    app_uptime: str = ""
    workers: int = 0
    workers_wanted: int = 0
    nginx_active: bool = False
    nginx_config: str = ""
    nginx_config_ok: bool = False
    ufw_active: bool = False
    ufw_allowed: list = field(default_factory=list)
    release: str = ""
    deployed_at: str = ""
    http_status: int = 0
    http_latency_ms: float = 0.0
    http_body_ok: bool = False
    processes: dict = field(default_factory=dict)  # extra process -> {"state", "pid"}
    tls_expires: str = ""  # with TLS on: when the served certificate expires
    tls_days_left: int = None
    disk_free_mb: int = None  # where the app lives
    disk_free_pct: int = None
    columns: dict = field(default_factory=dict)  # the steps' own: title -> {"text", "ok"}
    database: dict = field(default_factory=dict)  # {"engine", "up", "size_kb"}, if it has one
    redis: dict = field(default_factory=dict)  # {"up", "memory"}, with app.redis
    security_updates: int = None  # pending, as of the server's last apt list refresh
    reboot_required: list = None  # the packages asking for it, when one is pending
    maintenance: bool = False  # fab maintenance on: visitors get the maintenance page
    enabled: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # worth knowing, not unhealthy
    as_json: bool = False

    @property
    def healthy(self):
        return not self.problems

    @property
    def failed(self):
        return bool(self.problems)

    changed = False

    def recap(self):
        return "healthy" if self.healthy else "; ".join(self.problems)

    def as_dict(self):
        out = asdict(self)
        out.pop("as_json")
        return {**out, "healthy": self.healthy}

    @staticmethod
    def report(results):
        """Print one table (or JSON) for every host of RESULTS ({host: result})."""
        rows = [result if isinstance(result, Status) else Status(host, problems=[result.recap()])
                for host, result in results.items()]
        if any(r.as_json for r in rows):
            print(json.dumps([r.as_dict() for r in rows], indent=2))
        else:
            print_table(rows)


# certbot renews 30 days before expiry; under two weeks left, renewal has been failing.
TLS_WARN_DAYS = 14


def redis_memory(s):
    """The app's Redis's memory, asked on its socket with its password in the environment
    (never in argv)."""
    return (f"REDISCLI_AUTH=\"$(sed -n 's/^requirepass //p' {q(s.redis_conf)} 2>/dev/null)\" "
            f"redis-cli -s {q(s.redis_socket)} --no-auth-warning info memory 2>/dev/null "
            "| sed -n 's/^used_memory_human://p'")
# Installed packages with a newer version in a security archive's list, as the lists are
# (apt's daily timer refreshes them). Read from the files: apt's own simulation (apt-get -s
# upgrade) solves every dependency and takes a second of CPU per server.
PENDING_SECURITY = r"""lists=$(ls /var/lib/apt/lists/*security*_Packages 2>/dev/null)
if [ -z "$lists" ]; then echo 0; else
  awk 'FILENAME == "/var/lib/dpkg/status" {
         if ($1 == "Package:") p = $2; else if ($1 == "Status:") ok = ($4 == "installed")
         else if ($1 == "Version:" && ok) have[p] = $2
         next }
       $1 == "Package:" { p = $2 }
       $1 == "Version:" && (p in have) && have[p] != $2 { print p, have[p], $2 }' \
    /var/lib/dpkg/status $lists |
  while read -r p have offered; do
    dpkg --compare-versions "$have" lt "$offered" && echo "$p"
  done | sort -u | wc -l
fi
"""
# Low disk: a new release (code + perhaps a virtualenv) may soon not fit.
DISK_LOW_PCT, DISK_LOW_MB = 10, 512


def expect(st, ok, problem):
    """Note PROBLEM on status ST unless OK."""
    if not ok:
        st.problems.append(problem)
    return ok


def status_script(s):
    """Everything `status` shows, gathered by one command on the server (as root)."""
    tls_line = (f"openssl x509 -enddate -noout -in {q(s.tls_cert_path)} 2>/dev/null | cut -d= -f2"
                if s.tls != "off" else "")
    # The pending updates are counted beside the rest. Supervisor is asked once, over its
    # socket (each supervisorctl is a Python start, a quarter of a second).
    return framed([
        ("running", f"""pending=$(mktemp)
( {PENDING_SECURITY} ) > "$pending" 2>/dev/null &
running=$({fact_of("running").shell(s)})
echo "$running"
pid=$(echo "$running" | awk -v n={q(s.name)} '$1 == n {{print $3}}')"""),
        ("workers", 'case "$pid" in \'\'|0|*[!0-9]*) echo 0;; *) pgrep -c -P "$pid";; esac'),
        ("uptime", 'case "$pid" in \'\'|0|*[!0-9]*) ;; *) ps -o etimes= -p "$pid";; esac'),
        ("nginx", 'systemctl is-active nginx; out=$(nginx -t 2>&1); echo "$?"; '
                  'echo "$out" | tail -n1'),
        ("ufw", 'ufw=$(ufw status 2>/dev/null); echo "$ufw" | head -n1\n'
                'echo "$ufw" | awk \'/ALLOW/ && $0 !~ /\\(v6\\)/ {print $1}\''),
        ("release", f"readlink {q(s.current)}; stat -c %Y {q(s.current)} 2>/dev/null"),
        ("enabled", services_script(steps.needs(s).services)),
        ("probe", probe_command(s, s.site_url, 0) if s.serves_app or s.balancing else ""),
        ("tls", tls_line),
        ("database", size_script(s)),
        ("redis", redis_memory(s) if s.local_redis else ""),
        ("disk", fact_of("disk").shell(s)),
        ("updates", 'wait; cat "$pending"; rm -f "$pending"'),
        ("reboot", '[ -f /run/reboot-required ] && echo "reboot $(sort -u '
                   '/run/reboot-required.pkgs 2>/dev/null | tr \'\\n\' \' \')"'),
        ("maintenance", fact_of("maintenance").shell(s) if s.serves_app else ""),
        *((f"column {c.title}", c.shell(s)) for c in steps.columns()),
    ])


def parse_status(host, s, text):
    sec = sections(text)
    st = Status(host, workers_wanted=s.workers, roles=sorted(s.host_roles))
    running = fact_of("running").parse(sec.get("running", []))
    program = running.get(s.name)
    st.app_state = program.state if program and program.state else "MISSING"
    st.app_pid = program.pid if program else 0
    uptime = "".join(sec.get("uptime", [])).strip()
    if uptime.isdigit():
        st.app_uptime = clock(int(uptime))
    workers = "".join(sec.get("workers", [])).strip()
    st.workers = int(workers) if workers.isdigit() else 0
    nginx = sec.get("nginx", []) + ["", "", ""]
    st.nginx_active = nginx[0].strip() == "active"
    st.nginx_config_ok = nginx[1].strip() == "0"
    st.nginx_config = nginx[2].strip()
    ufw = sec.get("ufw", [])
    st.ufw_active = bool(ufw) and "Status: active" in ufw[0]
    st.ufw_allowed = [line.strip() for line in ufw[1:] if line.strip()]
    release = sec.get("release", []) + ["", ""]
    st.release = release[0].strip().rpartition("/")[2]
    if release[1].strip().isdigit():
        st.deployed_at = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(int(release[1])))
    for line in sec.get("enabled", []):
        parts = line.split()
        st.enabled[parts[0]] = len(parts) > 1 and parts[1] == "enabled"
    ok, st.http_status, st.http_latency_ms, _ = parse_probe("\n".join(sec.get("probe", [])))
    st.http_body_ok = ok
    expires = "".join(sec.get("tls", [])).strip()
    if expires:
        end = calendar.timegm(time.strptime(expires, "%b %d %H:%M:%S %Y GMT"))
        st.tls_expires = time.strftime("%Y-%m-%d", time.gmtime(end))
        st.tls_days_left = int((end - time.time()) // 86400)

    disk = fact_of("disk").parse(sec.get("disk", []))
    if disk:
        st.disk_free_mb = disk.free_kb // 1024
        st.disk_free_pct = disk.free_kb * 100 // max(disk.size_kb, 1)
        expect(st, st.disk_free_pct >= DISK_LOW_PCT or st.disk_free_mb >= DISK_LOW_MB,
               f"the disk of {s.dir} is low: {st.disk_free_mb} MB free "
               f"({st.disk_free_pct}%); a new release may not fit")
    pending = "".join(sec.get("updates", [])).strip()
    st.security_updates = int(pending) if pending.isdigit() else None
    if st.security_updates:
        st.notes.append(f"{st.security_updates} security update(s) pending (`fab harden` "
                        "installs them daily, unattended)")
    reboot = " ".join(sec.get("reboot", [])).split()
    if reboot:
        st.reboot_required = reboot[1:]
        st.notes.append("a reboot is pending" + (f" (for {', '.join(reboot[1:])})"
                                                 if reboot[1:] else ""))
    st.maintenance = fact_of("maintenance").parse(sec.get("maintenance", []))
    if st.maintenance:
        st.notes.append("maintenance is on: visitors get the maintenance page (503); "
                        "fab maintenance off ends it")
    if s.local_engine != "none":
        size = "".join(sec.get("database", [])).strip()
        st.database = {"engine": s.local_engine, "up": size.isdigit(),
                       "size_kb": int(size) if size.isdigit() else None}
        expect(st, size.isdigit() or s.local_engine == "sqlite",
               f"the {s.local_engine} database {s.database_name} does not answer")
    if s.local_redis:
        memory = "".join(sec.get("redis", [])).strip()
        st.redis = {"up": bool(memory), "memory": memory}
        expect(st, bool(memory), "redis does not answer")
    for name, rid in (stale_programs(s, running, st.release) if st.release else {}).items():
        st.problems.append(f"{name} still runs release {rid}, not the current {st.release} "
                           "(an interrupted switch): run `fab deploy` to restart it")
    for proc in sorted(s.host_processes):
        program = running.get(f"{s.name}-{proc}")
        state = program.state if program and program.state else "MISSING"
        st.processes[proc] = {"state": state, "pid": program.pid if program else 0}
        expect(st, state == "RUNNING", f"process {proc} is {state}")
    if s.serves_app:  # the other roles have no gunicorn
        expect(st, st.app_state == "RUNNING", f"app is {st.app_state}")
        expect(st, st.app_state != "RUNNING" or st.workers == s.workers,
               f"{st.workers} workers running, {s.workers} wanted")
    if s.runs_app:
        expect(st, bool(st.release), "no release deployed")
    http = s.serves_app or s.balancing
    if http:
        expect(st, st.nginx_active, "nginx is not active")
        expect(st, st.nginx_config_ok, f"nginx -t failed: {st.nginx_config}")
    expect(st, st.ufw_active, "ufw is not active")
    if http:
        expect(st, st.http_status == 200,
               f"HTTP {s.health_path} through nginx gave {st.http_status}")
        expect(st, st.http_status != 200 or st.http_body_ok,
               f"HTTP body lacks {s.health_text!r}")
    for column in steps.columns():
        text, problem = column.read(s, sec.get(f"column {column.title}", []))
        st.columns[column.title] = {"text": text, "ok": not problem}
        expect(st, not problem, problem)
    for unit, on in sorted(st.enabled.items()):
        expect(st, on, f"{unit} is not enabled at boot")
    if s.tls != "off":
        expect(st, bool(st.tls_expires), f"no certificate at {s.tls_cert_path}")
        expect(st, st.tls_days_left is None or st.tls_days_left >= TLS_WARN_DAYS,
              f"the certificate expires in {st.tls_days_left} days ({st.tls_expires})")
    return st


def clock(seconds):
    """H:MM:SS, as supervisor shows uptimes (days count as hours)."""
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def print_table(rows):
    color = sys.stdout.isatty()

    def cell(text, ok):
        text = str(text)
        if ok:
            return text
        return f"\033[31m{text}!\033[0m" if color else f"{text}!"

    steps_own = list(dict.fromkeys(title for r in rows for title in r.columns))
    header = ["HOST", "APP", "PID", "UPTIME", "WORKERS", "PROCESSES", "NGINX", "UFW", "RELEASE",
              "DEPLOYED", "HTTP", "TLS UNTIL", "DATA", "DISK FREE", "UPDATES", "BOOT",
              *(title.upper() for title in steps_own)]
    table = [header]
    for r in rows:
        boot = ",".join(u for u, on in sorted(r.enabled.items()) if not on)
        app, http = "web" in r.roles, bool({"web", "lb"} & set(r.roles))
        table.append([
            r.host, cell(r.app_state or "-", r.app_state == "RUNNING") if app
            else f"({','.join(r.roles)})",
            str(r.app_pid or "-"), r.app_uptime or "-",
            cell(f"{r.workers}/{r.workers_wanted}", r.workers == r.workers_wanted) if app
            else "-",
            cell(" ".join(f"{proc}:{p['state']}({p['pid']})" for proc, p in r.processes.items())
                 or "-", all(p["state"] == "RUNNING" for p in r.processes.values())),
            cell(("active" if r.nginx_active else "inactive")
                 + ("" if r.nginx_config_ok else " (bad config)"),
                 r.nginx_active and r.nginx_config_ok) if http else "-",
            cell(("active " + " ".join(r.ufw_allowed)) if r.ufw_active else "inactive",
                 r.ufw_active),
            cell(r.release or "-", bool(r.release) and not any("still runs release" in p
                                                               for p in r.problems)),
            r.deployed_at or "-",
            cell(f"{r.http_status} {r.http_latency_ms:.0f}ms" + ("" if r.http_body_ok else
                                                                  " (body?)"),
                 r.http_status == 200 and r.http_body_ok) if http else "-",
            cell(r.tls_expires or "-", not any("certificate" in p for p in r.problems)),
            cell(data_cell(r), (not r.database or r.database["up"] or
                                r.database["engine"] == "sqlite") and r.redis.get("up", True)),
            cell(f"{r.disk_free_mb} MB" if r.disk_free_mb is not None else "-",
                 not any(p.startswith("the disk") for p in r.problems)),
            updates_cell(r),
            cell("ok" if not boot else f"off: {boot}", not boot),
            *(cell(r.columns.get(title, {}).get("text", "-"),
                   r.columns.get(title, {}).get("ok", True)) for title in steps_own),
        ])
    widths = [max(len(strip_ansi(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        cells = (c + " " * (w - len(strip_ansi(c))) for c, w in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    for r in rows:
        for line in r.problems + [f"note: {note}" for note in r.notes]:
            print(f"{r.host}: {line}")


def updates_cell(r):
    """`none`, `3 security`, with `+reboot` when one is pending; `-` when apt cannot say."""
    text = "-" if r.security_updates is None else \
        f"{r.security_updates} security" if r.security_updates else "none"
    return text + (" +reboot" if r.reboot_required is not None else "")


def data_cell(r):
    """`postgresql 7 MB, redis 1.02M`; `-` for an app without either."""
    parts = []
    if r.database:
        size = r.database["size_kb"]
        parts.append(f"{r.database['engine']} " + (f"{size // 1024} MB" if size is not None
                                                   else "down"))
    if r.redis:
        parts.append(f"redis {r.redis['memory'] or 'down'}")
    return ", ".join(parts) or "-"


def strip_ansi(text):
    return re.sub(r"\033\[[0-9;]*m", "", text)


@task(help={"json": "print JSON (a list with one object per host) instead of a table"})
def status(c, json=False):
    """Show app, nginx, firewall, release and an HTTP probe per host; exit 1 if unhealthy."""
    h = open_host(c)
    try:
        text = h.read(status_script(h.settings))
    except DeployError as e:
        raise DeployError(f"could not read status: {e}") from None
    st = parse_status(h.name, h.settings, text)
    st.as_json = json
    return st
