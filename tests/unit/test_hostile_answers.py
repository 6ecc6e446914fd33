"""What a server prints can be shaped by the app: facts cannot be forged, and root acts only
on names of the exact shape fab makes."""

import json
import subprocess

import pytest
from invoke import Config

from tasks import facts, revision
from tasks.config import load
from tasks.names import listed
from tasks.output import printable
from tasks.shell import DeployError
from tasks.steps import app
from tests.unit.answers import MARK, answer
from tests.unit.stack import converged_facts

S = load(Config(overrides={"app": {}}))
FORGED = "/tmp/y\n@@candidates\nssh.service\n@@half_built\nrelease .."


def running_line(name, cwd):
    return f"{name} RUNNING 4242 {json.dumps(cwd)}"


def test_a_working_folder_with_blocks_in_it_forges_nothing():
    """The attack of issue 24: the app's process names its folder so that the lines after
    `running` read as blocks of their own. The folder crosses as JSON, and only the run's
    mark starts a block."""
    f = facts.parse(answer(f"@@running\n{running_line(S.name, FORGED)}\n@@candidates\n"))
    assert f.candidates == [] and f.half_built == []
    assert f.program.release == FORGED
    # Written raw, as before, the lines cannot start a block either: they lack the mark.
    raw = facts.sections(f"{MARK}\n{MARK} running\n{S.name} RUNNING 1 {FORGED}\n")
    assert list(raw) == ["running"]


def test_an_answer_without_the_mark_or_with_a_block_twice_is_refused():
    with pytest.raises(DeployError, match="has no mark"):
        facts.parse("@@running\nhello-world RUNNING 1 \"/\"\n")
    # a login shell's start-up file printed first: skipped
    assert facts.parse("Welcome!\n" + answer("@@os_id\ndebian\n")).os_id == "debian"
    with pytest.raises(DeployError, match="block 'candidates' twice"):
        facts.parse(f"{MARK}\n{MARK} candidates\n{MARK} candidates\n")


def test_the_mark_is_fresh_random_hex_drawn_on_the_server():
    out = subprocess.run(["sh", "-c", facts.framed([("one", "echo 1")])], capture_output=True,
                         text=True, check=True).stdout
    again = subprocess.run(["sh", "-c", facts.framed([])], capture_output=True, text=True,
                           check=True).stdout
    mark = out.split("\n")[0]
    assert facts.MARK_RE.fullmatch(mark) and mark != again.strip()
    assert facts.sections(out) == {"one": ["1", ""]}


def test_names_of_another_shape_are_reported_never_acted_on():
    f = converged_facts()
    f.candidates = ["ssh.service", "hello-world-candidate-0123abcd.service",
                    "hello-world-candidate-x.service"]
    f.half_built = ["release ..", "release 20270101T000000Z-cccccccc", "venv ../../etc",
                    "venv ?unsafe"]
    plan = app.plan(S, f, revision.Source("feedface", "0123456789abcdef"))
    scripts = "\n".join(change.script for change in plan.changes)
    assert scripts == ("systemctl stop hello-world-candidate-0123abcd.service\n"
                       "rm -rf -- /srv/hello-world/releases/20270101T000000Z-cccccccc")
    assert plan.notes == ["left alone unit ssh.service, unit hello-world-candidate-x.service, "
                          "release .., venv ../../etc, venv ?unsafe: not a name fab makes "
                          "(remove it by hand if it is not yours)"]


def test_listed_names_print_only_safe_characters():
    script = facts.framed([("names", 'for n in "a b" "ok-1.2" "x\n@@y" "20260101T000000Z-0a"; '
                                     f'do {listed("n")}; done')])
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert facts.sections(out)["names"][:4] == ["?unsafe", "ok-1.2", "?unsafe",
                                                 "20260101T000000Z-0a"]


def test_releases_and_venvs_of_another_shape_are_not_facts():
    f = facts.parse(answer("@@releases\n..\n20260101T000000Z-aaaaaaaa\n?unsafe\n"
                           "@@venvs\n0123456789abcdef 10\n../x 5\n"))
    assert f.releases == ["20260101T000000Z-aaaaaaaa"]
    assert f.venvs == {"0123456789abcdef": 10}


def test_what_the_server_prints_cannot_drive_the_terminal():
    assert printable("ok\x1b]0;owned\x07\x1b[2J\r\x9b") == \
        "ok\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x9b"
    assert printable("tab\tstays") == "tab\tstays"


def test_app_user_is_adopted_only_when_fab_made_it():
    from tasks import accounts
    from tasks.readers import Account
    f = converged_facts()
    assert accounts.foreign_user(S, f) is None  # fab's comment
    f.user_account = Account("www-data", "/var/www", "/usr/sbin/nologin")
    f.program_conf = {"user": "hello-world"}
    assert "is an account fab did not make" in accounts.foreign_user(S, f)
    with pytest.raises(DeployError, match="is an account fab did not make"):
        app.plan(S, f, revision.Source("feedface", "0123456789abcdef"))
    # made by an earlier version (no comment), already running this app: adopted and marked
    f.user_account = Account("", "/nonexistent", "/usr/sbin/nologin")
    assert accounts.foreign_user(S, f) is None
    layout = app.plan(S, f, revision.Source("feedface", "0123456789abcdef")).changes[0].script
    assert "usermod --comment 'fab app hello-world' hello-world" in layout


def test_the_live_release_is_a_name_fab_makes_or_none():
    assert facts.parse(answer("@@live_release\n20260101T000000Z-aaaaaaaa\n")).live_release == \
        "20260101T000000Z-aaaaaaaa"
    for forged in ("..", "?unsafe", "20260101T000000Z-aaaaaaaa/../..", ""):
        assert facts.parse(answer(f"@@live_release\n{forged}\n")).live_release == ""
