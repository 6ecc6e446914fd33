"""app.roles: validation, which hosts a run takes, and what each role's host (database,
web, worker, balancer) installs, renders and opens."""

import dataclasses

import pytest
from invoke import Config

from tasks.config import ConfigError, load, validate
from tasks.facts import Facts
from tasks.readers import ufw_rule
from tasks.roles import for_host, roles_of, selected
from tasks.shell import DeployError
from tasks.site import render_site
from tasks.steps import database, firewall, needs
from tasks.steps.supervisor import render_conf

ROLES = {"web": ["web1", "tom@web2"], "lb": ["lb1"]}
S = load(Config(overrides={"app": {"roles": ROLES}}))


def config(**app):
    return Config(overrides={"app": app})


@pytest.mark.parametrize("roles, fragment", [
    ({"cache": ["c1"]}, "'cache' is not a role (roles: db, web, worker, lb, backup)"),
    ({"web": ["w"], "backup": ["b"]}, "app.roles.backup: the backup host keeps app.database's"),
    ({"web": ["w"], "backup": ["b1", "b2"], "database": "sqlite"}, "one backup host, not 2"),
    ({"web": "web1"}, "app.roles.web: must be a list of hosts"),
    ({"web": ["web1; id"]}, "app.roles.web: must be a list of hosts"),
    ({"web": ["a"], "lb": ["a"]}, "a is both web and lb"),
    ({"lb": ["lb1"]}, "the app needs web hosts (app.roles.web)"),
    ({"web": ["w"], "worker": ["k"]}, "worker hosts run app.processes, and there are none"),
    ({"web": ["w"], "db": ["d1", "d2"], "redis": True}, "one database host, not 2"),
    ({"web": ["w"], "db": ["d"]}, "a database host runs app.database (postgresql or mysql)"),
    ({"web": ["w"], "db": ["w"], "redis": True}, "w is both web and db"),
    (["web1"], "must be a mapping of roles to lists of hosts"),
])
def test_bad_roles_are_named_with_the_fix(roles, fragment):
    redis = isinstance(roles, dict) and bool(roles.pop("redis", False))
    database = roles.pop("database", "none") if isinstance(roles, dict) else "none"
    with pytest.raises(ConfigError) as e:
        validate(config(roles=roles, redis=redis, database=database))
    assert len(e.value.problems) == 1 and fragment in e.value.problems[0]


def test_several_web_hosts_with_a_database_of_their_own_are_refused():
    with pytest.raises(ConfigError, match="would give each its own database"):
        validate(config(roles=ROLES, database="postgresql"))


def test_a_run_takes_the_roles_hosts_web_first_and_a_role_name_stands_for_its_hosts():
    assert selected(ROLES, "") == ["web1", "tom@web2", "lb1"]
    assert selected(ROLES, "lb,web") == ["web1", "tom@web2", "lb1"]
    assert selected(ROLES, "lb") == ["lb1"]
    assert selected(ROLES, "other,web1,web1") == ["other", "web1"]


def test_roles_of_a_host():
    assert roles_of(S, "lb1") == {"lb"} and roles_of(S, "tom@web2") == {"web"}
    assert roles_of(S, "web2") == {"web"}  # Fabric's original_host: no user@ or :port
    assert roles_of(S, "stranger") == frozenset()
    assert roles_of(load(config()), "anything") == {"web"}  # no roles: the whole stack


def test_a_balancer_installs_nginx_and_ufw_and_proxies_to_its_web_hosts():
    lb = dataclasses.replace(S, host_roles=frozenset({"lb"}), upstream=("10.0.0.2", "10.0.0.3"))
    assert needs(lb).packages == ("nginx", "ufw")
    site = render_site(lb, down={"10.0.0.3"})
    assert "server 10.0.0.2:80 max_fails=1 fail_timeout=10s;" in site
    assert "server 10.0.0.3:80 max_fails=1 fail_timeout=10s down;" in site
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in site
    assert "127.0.0.1:8001" not in site and "alias " not in site  # the web hosts serve it all


def test_a_web_host_behind_balancers_takes_http_from_them_only_and_trusts_their_headers():
    web = dataclasses.replace(S, balancers=("10.0.0.9",))
    facts = Facts(ufw_active=True, ufw_rules={"allow 22/tcp", "allow 80/tcp"}, needs=needs(web))
    add, delete, _ = firewall.rule_changes(web, facts)
    assert add == ["allow 80/tcp from 10.0.0.9"] and delete == ["allow 80/tcp"]
    assert firewall.ufw_args(add[0]) == "allow from 10.0.0.9 to any port 80 proto tcp"
    site = render_site(web)
    assert "set_real_ip_from 10.0.0.9;" in site and "$http_x_forwarded_proto" in site


def test_ufw_rules_from_one_address_are_read_back():
    line = "### tuple ### allow tcp 80 0.0.0.0/0 any 10.0.0.9 in"
    assert ufw_rule(line) == "allow 80/tcp from 10.0.0.9"
    assert ufw_rule("### tuple ### allow tcp 80 0.0.0.0/0 any 10.0.0.0/24 in") is None


FLEET = {"db": ["10.0.0.5"], "web": ["10.0.0.2", "tom@10.0.0.3"], "worker": ["10.0.0.4"],
         "lb": ["10.0.0.9"]}
F = load(Config(overrides={"app": {"roles": FLEET, "database": "postgresql", "redis": True,
                                   "processes": {"worker": "rq worker"}}}))


def host(name):
    """F as NAME sees it (addresses are IP literals: nothing to resolve)."""
    return for_host(F, Config(), name)


def test_each_host_knows_the_addresses_it_deals_with():
    db, web, worker, lb = (host(h) for h in ("10.0.0.5", "tom@10.0.0.3", "10.0.0.4", "10.0.0.9"))
    assert db.database_clients == ("10.0.0.2", "10.0.0.3", "10.0.0.4")
    assert web.database_host == worker.database_host == "10.0.0.5"
    assert web.balancers == ("10.0.0.9",) and lb.upstream == ("10.0.0.2", "10.0.0.3")
    assert selected(FLEET, "") == ["10.0.0.5", "10.0.0.2", "tom@10.0.0.3", "10.0.0.4",
                                   "10.0.0.9"]


def test_the_database_host_runs_the_engines_and_opens_them_to_the_app_hosts_only():
    db = host("10.0.0.5")
    assert needs(db).packages == ("postgresql", "redis-server", "ufw")
    assert db.programs == [] and not db.runs_app
    stale = "allow 5432/tcp from 10.0.0.7"  # a host no longer in app.roles
    facts = Facts(ufw_active=True, ufw_rules={"allow 22/tcp", stale, "allow 8080/tcp"},
                  needs=needs(db))
    add, delete, _ = firewall.rule_changes(db, facts)
    assert add == [f"allow {port}/tcp from 10.0.0.{n}"
                   for port in (5432, db.redis_port) for n in (2, 3, 4)]
    assert delete == [stale]  # and the user's own 8080 stays
    script = database.setup_script(db, Facts())
    assert "listen_addresses = 'localhost,%s'" in script and " 10.0.0.5 " in script
    assert "host hello_world hello_world 10.0.0.4/32 scram-sha-256" in script
    assert "bind 127.0.0.1 -::1 10.0.0.5" in script
    assert "@10.0.0.5:5432/hello_world" in script and "chown root:root" in script
    mysql = dataclasses.replace(db, database="mysql")
    assert "CREATE USER IF NOT EXISTS 'hello_world'@'10.0.0.4'" in \
        database.setup_script(mysql, Facts())


def test_app_hosts_run_no_engine_and_take_database_env_from_the_database_host():
    web, worker = host("10.0.0.2"), host("10.0.0.4")
    assert needs(web).packages == ("python3-venv", "supervisor", "nginx", "ufw")
    assert needs(worker).packages == ("python3-venv", "supervisor", "ufw")
    env = {"DATABASE_URL": "postgresql+psycopg2", "REDIS_URL": ""}
    converged = Facts(database_env=env, database_at={"10.0.0.5"})
    assert database.plan(web, converged).changes == []
    assert "copy /etc/hello-world/database.env from 10.0.0.5" in \
        database.plan(web, Facts()).changes[0].would
    with pytest.raises(DeployError, match="its postgresql database hello_world at 127.0.0.1"):
        database.plan(web, Facts(database_env=env, database_at={"127.0.0.1"}))  # data here


def test_workers_run_the_processes_and_web_hosts_gunicorn_only():
    web, worker = host("10.0.0.2"), host("10.0.0.4")
    assert web.programs == ["hello-world"] and worker.programs == ["hello-world-worker"]
    assert "[program:hello-world-worker]" not in render_conf(web)
    conf = render_conf(worker)
    assert conf.count("[program:") == 1 and "gunicorn --config" not in conf
    assert firewall.wanted_rules(worker, Facts(needs=needs(worker))) == ["allow 22/tcp"]
    alone = load(Config(overrides={"app": {"processes": {"worker": "rq worker"}}}))
    assert alone.programs == ["hello-world", "hello-world-worker"]  # no roles: one host
