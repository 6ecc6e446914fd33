"""Switching releases: the current link, candidates, covered restarts, rollback."""

from types import SimpleNamespace

import pytest

from tasks import deploy, revision, switch
from tasks.health import parse_probe
from tasks.host import Host
from tasks.run import HostRun
from tasks.shell import DeployError
from tasks.steps import app
from tests.unit.answers import probe_line
from tests.unit.stack import CONVERGED, S, ScriptedHost, converged_facts, parse


def test_release_switches_current_by_renaming_a_new_symlink():
    lines = switch.switch_script(S, "20260101T000000Z-abcdabcd").splitlines()
    assert lines[2] == "mv -Tf /srv/hello-world/current.fab-new /srv/hello-world/current"
    # `previous` follows, only to a name of fab's shape of a release
    assert lines[3].startswith('if [ "$old" != releases/20260101T000000Z-abcdabcd ] && ') \
        and "grep -qxE 'releases/[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}'" in lines[3]
    assert lines[4].endswith("mv -Tf /srv/hello-world/previous.fab-new /srv/hello-world/previous")
    # gunicorn restarts over supervisord's socket without waiting out startsecs: the
    # health probes after the switch are its proof
    restart = "\n".join(lines[6:])
    assert restart.startswith("python3 -I -S -c ") and restart.endswith("' hello-world")
    assert "stopProcess(name, True)" in restart and "startProcess(name, False)" in restart
    assert "supervisorctl" not in restart


def test_a_deployment_of_a_version_before_sockets_moves_to_them_covered():
    """Its program listens on 127.0.0.1:8000 and its site sends to 8000, then 8001: the
    candidate answers on 8001 too, and the site moves in the program's covered restart."""
    old = converged_facts()
    old.program_conf = {"user": "hello-world", "command": "/srv/hello-world/current/.venv/bin/"
                        "gunicorn --workers 4 --bind 127.0.0.1:8000 app:app"}
    assert switch.legacy_port(old) == 8000 and switch.legacy_port(converged_facts()) is None
    h = ScriptedHost(old)
    switch.first_release(h, "20260101T000000Z-abcdabcd")
    assert "--bind unix:/srv/hello-world/run/candidate.sock --bind 127.0.0.1:8001 app:app" \
        in h.changes[0]


def test_a_candidate_is_stopped_without_waiting_only_after_the_block_succeeded():
    """Its graceful exit goes on alone, with what needed the block's success in the same
    command; after a failure the stop waits, so nothing of it outlives the run."""
    h = ScriptedHost()
    switch.first_release(h, "20260101T000000Z-abcdabcd")
    start, stop = h.changes
    assert "--workers 1 --bind unix:/srv/hello-world/run/candidate.sock app:app" in start
    assert stop.startswith("systemctl stop --no-block hello-world-candidate-")
    assert stop.endswith(switch.link_current(S, "20260101T000000Z-abcdabcd"))

    h = ScriptedHost()
    with pytest.raises(DeployError, match="nope"), switch.candidate(h, "/r", then="echo then"):
        raise DeployError("nope")
    assert h.changes[-1].startswith("systemctl stop hello-world-candidate-")
    assert not any("echo then" in script for script in h.changes)


def test_the_site_s_last_answer_stands_until_a_change_that_may_alter_what_it_serves():
    """The health step reports the answer that proved the switch; a prune or a stopped
    candidate leaves it standing, any other change makes the step probe again."""
    class Connection:
        user, host, is_connected = "root", "web1", True

        def run(self, command, **_):
            return SimpleNamespace(stdout="", stderr="", exited=0)
    h = HostRun(Host(Connection()), S)
    h.site_answer = "HTTP 200 in 3 ms through nginx"
    h.change("true", serving_unchanged=True)
    assert deploy.probe_site(h) == "HTTP 200 in 3 ms through nginx (probed after the last change)"
    h.change("true")
    assert h.site_answer == ""


def test_rollback_goes_to_the_release_before_the_live_one():
    f = parse(CONVERGED)
    assert deploy.previous_release(f, "20260101T000000Z-aaaaaaaa") == "20250101T000000Z-bbbbbbbb"
    assert deploy.previous_release(f, "20250101T000000Z-bbbbbbbb") is None


def test_health_probe_output_is_parsed():
    assert parse_probe(probe_line(1, 200, 3.5, "Hello world") + "\n") == \
        (True, 200, 3.5, "Hello world")
    assert parse_probe(probe_line(0, 500, 12.0, "<h1>Internal")) == \
        (False, 500, 12.0, "<h1>Internal")
    assert parse_probe("Traceback ...")[0] is False


def test_a_page_cannot_forge_a_healthy_probe():
    """A 500 whose body holds what a healthy answer prints stays a 500: the body crosses as
    one JSON string (no line break of any kind starts a new answer)."""
    forged = "x\r1 200 1.0 ok\n[1, 200, 1.0, \"ok\"]\u2028[1, 200, 1.0, \"ok\"]"
    ok, code, _, excerpt = parse_probe(probe_line(0, 500, 3.0, forged))
    assert (ok, code) == (False, 500) and excerpt.startswith("x\r1 200")


def test_rollback_plans_a_covered_switch_or_says_why_not():
    f = parse(CONVERGED)
    (switch_back,) = deploy.rollback_plan(S, f).changes
    assert switch_back.said == "20260101T000000Z-aaaaaaaa -> 20250101T000000Z-bbbbbbbb"
    assert deploy.rollback_plan(S, f, "20260101T000000Z-aaaaaaaa").ok == \
        "20260101T000000Z-aaaaaaaa is already live"
    with pytest.raises(DeployError, match="no release 'nope'"):
        deploy.rollback_plan(S, f, "nope")


def test_programs_left_on_another_release_are_restarted_covered_on_the_live_one():
    f = converged_facts()
    same = revision.Source("feedface", "0123456789abcdef")
    old = "/srv/hello-world/releases/20250101T000000Z-bbbbbbbb"
    f.running["hello-world"] = f.running["hello-world"]._replace(release=old)
    (restart,) = app.plan(S, f, same).changes
    assert restart.run is switch.restart
    assert restart.said == ("restarted hello-world on the live release 20260101T000000Z-aaaaaaaa "
                            "(they still ran 20250101T000000Z-bbbbbbbb: a switch was interrupted)")
    # a process that changed folder on its own is not judged; a deleted release is
    f.running["hello-world"] = f.running["hello-world"]._replace(release="/tmp")
    assert app.plan(S, f, same).changes == []
    f.running["hello-world"] = f.running["hello-world"]._replace(release=old + " (deleted)")
    assert switch.stale_programs(S, f.running, "20260101T000000Z-aaaaaaaa") == {
        "hello-world": "20250101T000000Z-bbbbbbbb"}


def test_a_rollback_finishes_what_an_interrupted_one_left_instead_of_going_further_back():
    f = converged_facts()
    f.candidates = ["hello-world-candidate-0123abcd.service"]
    plan = deploy.rollback_plan(S, f)
    assert [c.said for c in plan.changes] == [
        "stopped hello-world-candidate-0123abcd.service (an interrupted run's)"]
    f.candidates = []
    f.running["hello-world"] = f.running["hello-world"]._replace(
        release="/srv/hello-world/releases/20250101T000000Z-bbbbbbbb")
    (restart,) = deploy.rollback_plan(S, f).changes
    assert restart.run is switch.restart
    assert deploy.rollback_plan(S, f, to="20260101T000000Z-aaaaaaaa").ok.endswith("already live")
