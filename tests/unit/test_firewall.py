"""The firewall step: ufw rules from the stack's ports, behind a dead-man switch."""



from tasks.steps import firewall
from tests.unit.stack import CONVERGED, TLS, S, facts_for, parse


def test_firewall_allows_the_ssh_port_in_use_before_enabling():
    f = parse(CONVERGED)
    assert firewall.rule_changes(S, f) == ([], [], False)
    fresh = facts_for(S, ssh_port=2222)
    assert firewall.rule_changes(S, fresh) == (["allow 2222/tcp", "allow 80/tcp"], [], True)
    assert firewall.wanted_rules(S, fresh)[0] == "allow 2222/tcp"


def test_firewall_opens_https_only_while_tls_is_on():
    f = parse(CONVERGED, TLS)
    assert firewall.rule_changes(TLS, f) == (["allow 443/tcp"], [], False)
    f.ufw_rules.add("allow 443/tcp")
    assert firewall.rule_changes(TLS, f) == ([], [], False)
    off = parse(CONVERGED)
    off.ufw_rules.add("allow 443/tcp")
    assert firewall.rule_changes(S, off) == ([], ["allow 443/tcp"], False)


def test_firewall_allows_ssh_before_enabling_behind_a_dead_man_switch():
    plan = firewall.plan(S, facts_for(S, ssh_port=2222))
    allow, enable, boot = plan.changes
    assert allow.script.splitlines()[0] == "ufw allow 2222/tcp >/dev/null"
    assert enable.said == "enabled ufw" and enable.run is firewall.enable
    assert "--on-active=120 /usr/sbin/ufw --force disable" in firewall.enable_script(S)
    assert boot.said == "enabled ufw at boot"


def test_https_stays_open_while_another_apps_site_uses_it():
    f = parse(CONVERGED)
    f.ufw_rules.add("allow 443/tcp")
    assert firewall.rule_changes(S, f)[1] == ["allow 443/tcp"]
    f.other_tls_sites = True
    assert firewall.rule_changes(S, f)[1] == []


def test_harden_proves_key_login_before_the_change_even_in_a_dry_run():
    from tasks.steps import harden
    assert harden.plan(harden.WANTED).ok == "password and root login already off"
    prove, change = harden.plan({"permitrootlogin": "yes"}).changes
    assert prove.read_only and prove.run is harden.prove_key_login and not change.read_only
    assert "sshd -t" in harden.apply_script("PermitRootLogin no\n", 120)
