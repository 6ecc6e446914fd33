"""app.roles: validation, which hosts a run takes, and what a balancer and its web hosts
render and open."""

import dataclasses

import pytest
from invoke import Config

from tasks.facts import Facts, ufw_rule, wanted_packages
from tasks.roles import roles_of, selected
from tasks.settings import ConfigError, load, validate
from tasks.steps import firewall
from tasks.steps.nginx import render_site

ROLES = {"web": ["web1", "tom@web2"], "lb": ["lb1"]}
S = load(Config(overrides={"app": {"roles": ROLES}}))


def config(**app):
    return Config(overrides={"app": app})


@pytest.mark.parametrize("roles, fragment", [
    ({"cache": ["c1"]}, "'cache' is not a role (roles: web, lb)"),
    ({"web": "web1"}, "app.roles.web: must be a list of hosts"),
    ({"web": ["web1; id"]}, "app.roles.web: must be a list of hosts"),
    ({"web": ["a"], "lb": ["a"]}, "a is both web and lb"),
    ({"lb": ["lb1"]}, "a balancer needs web hosts behind it"),
    (["web1"], "must be a mapping of roles to lists of hosts"),
])
def test_bad_roles_are_named_with_the_fix(roles, fragment):
    with pytest.raises(ConfigError) as e:
        validate(config(roles=roles))
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
    assert wanted_packages(lb) == ("nginx", "ufw")
    site = render_site(lb, down={"10.0.0.3"})
    assert "server 10.0.0.2:80 max_fails=1 fail_timeout=10s;" in site
    assert "server 10.0.0.3:80 max_fails=1 fail_timeout=10s down;" in site
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in site
    assert "127.0.0.1:8001" not in site and "alias " not in site  # the web hosts serve it all


def test_a_web_host_behind_balancers_takes_http_from_them_only_and_trusts_their_headers():
    web = dataclasses.replace(S, balancers=("10.0.0.9",))
    facts = Facts(ufw_active=True, ufw_rules={"allow 22/tcp", "allow 80/tcp"})
    add, delete, _ = firewall.rule_changes(web, facts)
    assert add == ["allow 80/tcp from 10.0.0.9"] and delete == ["allow 80/tcp"]
    assert firewall.ufw_args(add[0]) == "allow from 10.0.0.9 to any port 80 proto tcp"
    site = render_site(web)
    assert "set_real_ip_from 10.0.0.9;" in site and "$http_x_forwarded_proto" in site


def test_ufw_rules_from_one_address_are_read_back():
    line = "### tuple ### allow tcp 80 0.0.0.0/0 any 10.0.0.9 in"
    assert ufw_rule(line) == "allow 80/tcp from 10.0.0.9"
    assert ufw_rule("### tuple ### allow tcp 80 0.0.0.0/0 any 10.0.0.0/24 in") is None
