"""Hooks and notifications, on this machine: a pre_deploy that fails stops the run before any
host, the run's facts reach the hooks' environment, and the JSON POST reaches a listener on
loopback (and a dead URL is one line, never a failure)."""

import pytest
from invoke import Exit

from tasks import hooks
from tasks.fields import DEFAULTS
from tasks.results import Run
from tests.listener import listen


def settings(**values):
    return {**DEFAULTS, "name": "shop", **values}


def ended(host, failed=False):
    run = Run(host, entry={"release": "20261204T070000Z-abcd1234", "revision": "a1b2c3d"})
    if failed:
        from tasks.results import FAILED, Outcome
        run.outcomes.append(Outcome("app", FAILED, "boom"))
    return run


@pytest.fixture
def listener():
    url, got, server = listen()
    yield url, got
    server.server_close()


def test_a_failing_pre_deploy_stops_the_run_and_the_facts_reach_the_hooks(tmp_path):
    out = tmp_path / "env"
    values = settings(hooks={"pre_deploy": f"env | grep ^FAB_ | sort > {out}; exit 3"})
    with pytest.raises(Exit, match="deploy: the pre_deploy hook exited 3; nothing was changed "
                                   "on web1, web2"):
        hooks.before(values, "deploy", ["web1", "web2"])
    env = out.read_text()
    assert "FAB_ACTION=deploy" in env and "FAB_APP=shop" in env and "FAB_HOSTS=web1,web2" in env
    hooks.before(settings(hooks={"pre_deploy": "true"}), "deploy", ["web1"])  # passes


def test_post_deploy_or_failed_runs_with_the_result_and_the_release(tmp_path):
    out = tmp_path / "after"
    values = settings(hooks={"post_deploy": f"echo ok $FAB_RELEASE $FAB_RESULT > {out}",
                             "failed": f"echo failed $FAB_RESULT $FAB_REVISION > {out}"})
    hooks.after(values, "deploy", ["web1"], {"web1": ended("web1")})
    assert out.read_text() == "ok 20261204T070000Z-abcd1234 ok\n"
    hooks.after(values, "rollback", ["web1"], {"web1": ended("web1", failed=True)})
    assert out.read_text() == "failed failed a1b2c3d\n"


def test_the_notification_is_one_json_post_with_slack_and_discord_text(listener):
    url, got = listener
    hooks.after(settings(notify=url), "deploy", ["web1"], {"web1": ended("web1")})
    assert len(got) == 1
    post = got[0]
    assert post["text"] == post["content"]
    assert post["text"].startswith("shop deploy ok on web1: 20261204T070000Z-abcd1234 "
                                   "(a1b2c3d) by ")
    assert (post["action"], post["result"], post["release"]) == (
        "deploy", "ok", "20261204T070000Z-abcd1234")


def test_a_notification_that_cannot_be_delivered_is_one_line_and_no_failure(capsys):
    hooks.after(settings(notify="http://127.0.0.1:9/nobody?token=secret"), "deploy",
                ["web1"], {"web1": ended("web1")})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("notify: http://127.0.0.1:9/nobody could not")
    assert "secret" not in err[0]
