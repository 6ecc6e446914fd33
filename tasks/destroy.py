"""`fab destroy`: take the app off its servers, keeping its data unless told otherwise.

What goes: its scheduled jobs and backup timer, its supervisor programs (stopped first) and
any unit of its still running, its nginx site (nginx checked and reloaded), its Redis
service, its releases, virtualenvs and uv's cache of them, git mirror, configuration, logs
and build account, and the HTTP/HTTPS firewall rules once no site is left on the host.
What stays, unless `--with-data`: `<dir>/shared`, `<dir>/backups`, its database and Redis
data, and the app's account that owns them, so a later `fab provision` + `fab deploy` brings
the app back on its data. The off-site backups on the backup host always stay.
"""

from invoke import Exit, task

from tasks.executor import FromExecutor
from tasks.installer import uv_cache
from tasks.plan import Command, Plan, Step
from tasks.provision import BREAK_LOCK, converge
from tasks.shell import q
from tasks.steps.firewall import ufw_args
from tasks.units import UNIT_DIR, units_removed, work_unit

WEB_PORTS = ("80/tcp", "443/tcp")


def drop_database(s):
    """Lines that drop the app's database and role on the engine this host runs."""
    name = s.database_name  # validated: a plain identifier
    if s.local_engine == "postgresql":
        sql = f"DROP DATABASE IF EXISTS {name} WITH (FORCE); DROP ROLE IF EXISTS {name};"
        return [f"if command -v psql >/dev/null; then cd / && runuser -u postgres -- "
                f"psql -Xq -v ON_ERROR_STOP=1 -c {q(sql)}; fi"]
    if s.local_engine == "mysql":
        sql = (f"DROP DATABASE IF EXISTS `{name}`; "
               f"DROP USER IF EXISTS '{name}'@'%', '{name}'@'localhost';")
        return [f"if command -v mysql >/dev/null; then mysql -e {q(sql)}; fi"]
    return []


def gone(account):
    """The line that removes ACCOUNT, its processes first (userdel refuses while they run)."""
    return (f"if id -u {q(account)} >/dev/null 2>&1; then pkill -KILL -u {q(account)} || true; "
            f"userdel {q(account)}; fi")


def destroy_script(s, facts, with_data):
    """The root script that removes the app from one host (each part only if there)."""
    redis = f"redis-server@{s.redis_instance}"
    web_rules = [r for r in facts.ufw_rules if r.split()[1] in WEB_PORTS]
    ours = [r for r in facts.ufw_rules if r.split()[1] == f"{s.redis_port}/tcp"]
    # The shapes of its candidates (names.candidate_unit) and its detached work
    # (units.work_unit + fresh); names (NAME_RE) hold no ERE specials.
    shapes = (f"{s.name}-candidate-[0-9a-f]{{8}}[.]service|"
              f"fab-{s.name}[.][a-z]+-[0-9a-f]{{8}}[.]service")
    # app.schedule's jobs (as the facts read them: of their exact shape) and the off-site
    # backup's timer; the backups on the backup host stay
    units = sorted(facts.job_units) + [f"{s.backup_unit}.service", f"{s.backup_unit}.timer"]
    lines = [
        *units_removed(units, [f"{UNIT_DIR}/{u}" for u in units]),
        f"rm -f {q(s.supervisor_conf)}",
        "if command -v supervisorctl >/dev/null; then supervisorctl reread >/dev/null; "
        "supervisorctl update >/dev/null; fi",
        # its candidates and detached work, by their exact shapes (never another app's)
        f"systemctl list-units --plain --no-legend --all {q(s.name + '-candidate-*')} "
        f"{q(work_unit(s, '*'))} 2>/dev/null | cut -d' ' -f1 | grep -xE {q(shapes)} "
        "| xargs -r systemctl stop >/dev/null 2>&1 || true",
        f"rm -f {q(s.nginx_enabled)} {q(s.nginx_site)} {q(s.maintenance_switch)} "
        f"{q(s.maintenance_page)}",
        "if command -v nginx >/dev/null && systemctl -q is-active nginx; then "
        "nginx -t -q && systemctl reload nginx; fi",
        f"systemctl disable --now {q(redis)} >/dev/null 2>&1 || true",
        f"rm -f {q(s.redis_conf)}",
        *[f"ufw delete {ufw_args(r)} >/dev/null" for r in ours],
        *(["if [ -z \"$(ls -A /etc/nginx/sites-enabled 2>/dev/null)\" ]; then "
           + "; ".join(f"ufw delete {ufw_args(r)} >/dev/null" for r in web_rules) + "; fi"]
          if web_rules else []),
        f"rm -rf {q(s.releases)} {q(s.venvs)} {q(s.current)} {q(s.previous)} {q(s.socket_dir)} "
        f"{q(s.build_scratch)} {q(s.repo_cache)} {q(s.git_credentials_path)} {q(s.log_dir)} "
        f"{q(uv_cache(s))}",
        f"rm -f /var/log/nginx/{q(s.name)}.access.log* /var/log/nginx/{q(s.name)}.error.log*",
        gone(s.build_user),
    ]
    if not with_data:  # the database's password stays with the database it opens
        keep = (s.database_env_path, s.database_access_path)
        return lines + [f"find {q(s.conf_dir)} -mindepth 1 -maxdepth 1 "
                        + " ".join(f"! -path {q(p)}" for p in keep)
                        + " -exec rm -rf {} + 2>/dev/null || true"]
    return lines + drop_database(s) + [
        f"rm -rf {q(s.dir)} {q(s.conf_dir)} /var/lib/redis/dump-{q(s.redis_instance)}.rdb",
        gone(s.user),
    ]


def destroy_plan(h, with_data):
    s = h.settings
    kept = "" if with_data else (f"; kept {s.shared}, {s.backups}, the database and its "
                                 f"account {s.user} (--with-data removes them)")
    if s.offsite:
        kept += f"; the off-site backups on {s.backup_host} stay"
    what = "its data too" if with_data else "keeping its data"
    return Plan([Command(f"removed {s.name}{kept}",
                         "\n".join(destroy_script(s, h.facts, with_data)), timeout=300,
                         would=f"remove {s.name} from this host, {what}")])


@task(klass=FromExecutor, help={
    "yes": "really remove it (without: refused, with what to run)",
    "with-data": "remove the database, Redis data, <dir>/shared and the backups too",
    "dry-run": "show what would be removed, changing nothing", "break-lock": BREAK_LOCK})
def destroy(c, yes=False, with_data=False, dry_run=False, break_lock=False):
    """Take the app off the hosts: programs, site, code; data and account with --with-data."""
    if not (yes or dry_run):
        raise Exit(f"{c.host}: fab destroy removes the app from it: run it with --yes "
                   "(see first what goes: --dry-run)", code=2)
    step = Step("destroy", lambda h: destroy_plan(h, with_data))
    return converge(c, "destroy", [step], dry_run, break_lock)
