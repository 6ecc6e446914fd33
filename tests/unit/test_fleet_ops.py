"""Pure parts of the deploy log, the security updates and the sandbox's releases."""

import json
import subprocess

from invoke import Config

from sandbox.servers import suite_sources
from tasks import history
from tasks.core import for_systemd, sha256
from tasks.results import CHANGED, FAILED, Outcome, Run
from tasks.settings import load
from tasks.steps import updates

S = load(Config(overrides={"app": {}}))


class FakeHost:
    def __init__(self, run, source=None):
        self.settings, self.run, self.source = S, run, source
        self.facts = type("F", (), {"links": {S.current: "releases/20261127T000000Z-abc"}})()
        self.c = type("C", (), {"user": "tom"})()


def test_a_history_line_is_one_json_object_stamped_by_the_servers_clock(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "HISTORY_DIR", str(tmp_path / "fab"))
    run = Run("web1", [Outcome("app", CHANGED, "released"), Outcome("health", FAILED, "HTTP 502")])
    line = json.dumps(history.entry(FakeHost(run), "deploy"))[1:]
    script = history.append_script(S, line).replace(" -o root -g adm", "")
    for _ in range(2):
        subprocess.run(["sh", "-c", script], check=True)
    written = (tmp_path / "fab/hello-world.jsonl").read_text().splitlines()
    entries = history.parse("\n".join([*written, '{"cut short']))
    assert len(entries) == 2 and entries[0]["time"].endswith("Z")
    assert entries[0]["action"] == "deploy" and entries[0]["result"] == FAILED
    assert entries[0]["failure"] == "health: HTTP 502" and entries[0]["changed"] == 1
    assert entries[0]["release"] == "20261127T000000Z-abc"
    assert entries[0]["revision"] is None  # the app step did not run


def test_history_merges_hosts_newest_first(capsys):
    older = {"time": "2026-11-27T10:00:00Z", "action": "deploy", "result": "ok"}
    newer = {"time": "2026-11-27T11:00:00Z", "action": "rollback", "result": "changed"}
    history.History.report({"web1": history.History([older]),
                            "web2": history.History([newer], as_json=True)})
    rows = json.loads(capsys.readouterr().out)
    assert [(r["host"], r["action"]) for r in rows] == [("web2", "rollback"), ("web1", "deploy")]


def test_updates_come_from_the_security_archive_only_and_reboot_only_when_asked():
    text = updates.origins("")
    assert text.index("#clear Unattended-Upgrade::Origins-Pattern;") < text.index("Pattern {")
    assert "#clear Unattended-Upgrade::Allowed-Origins;" in text
    assert '"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";' in text
    assert 'Automatic-Reboot "false"' in text and "Reboot-Time" not in text
    assert 'Automatic-Reboot-Time "04:30"' in updates.origins("04:30")


def test_updates_plan_is_empty_when_converged_and_installs_what_is_missing():
    converged = f"installed\n{sha256(updates.periodic())}\n{sha256(updates.origins(''))}\n"
    assert updates.plan(S, converged).changes == []
    fresh = updates.plan(S, "none\nnone\n").changes
    assert len(fresh) == 1 and "install unattended-upgrades" in fresh[0].script
    assert fresh[0].said.startswith("installed unattended-upgrades")
    edited = updates.plan(S, f"installed\n{sha256(updates.periodic())}\nabc\n").changes
    assert "install unattended-upgrades" not in edited[0].script
    assert edited[0].would == f"write {updates.ORIGINS}"


def test_systemd_gets_dollars_it_gives_back_literally():
    assert for_systemd('echo "${PWD}" $$') == 'echo "$${PWD}" $$$$'


def test_the_base_of_another_release_keeps_the_hosts_mirror():
    host = ("URIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\n"
            "URIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n")
    assert suite_sources(host, "trixie") == host.replace("bookworm", "trixie")
