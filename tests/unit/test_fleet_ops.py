"""Pure parts of the deploy log, the security updates and the sandbox's releases."""

import json
import subprocess
from types import SimpleNamespace

from invoke import Config

from sandbox.servers import suite_sources
from tasks import deploy_log, history
from tasks.config import load
from tasks.results import CHANGED, FAILED, Outcome, Run
from tasks.shell import for_systemd, sha256
from tasks.steps import updates

S = load(Config(overrides={"app": {}}))


class FakeHost:
    def __init__(self, run, run_id, current):
        self.settings = SimpleNamespace(name="hello-world", current=current)
        self.run, self.source, self.facts = run, None, None
        self.hold = SimpleNamespace(run_id=run_id)
        self.c = type("C", (), {"user": "tom"})()


def test_a_runs_history_line_is_written_with_the_lock_and_rewritten_when_it_ends(tmp_path,
                                                                                 monkeypatch):
    """Each line is one JSON object stamped by the server's clock; a run's line says `ok` as
    written, `unfinished` once it changes something, and how it ended once it does."""
    monkeypatch.setattr(deploy_log, "HISTORY_DIR", str(tmp_path / "fab"))
    (tmp_path / "current").symlink_to("releases/20261127T000000Z-abc")

    def sh(script):
        subprocess.run(["sh", "-c", script.replace(" -o root -g adm", "")
                        .replace("chown root:adm", "true")], check=True)
    quiet, busy = (FakeHost(Run("web1"), run_id, str(tmp_path / "current"))
                   for run_id in ("aaaa1111", "bbbb2222"))
    for h in (quiet, busy):
        sh(deploy_log.first_script(h, "provision"))
    sh(deploy_log.unfinished_script(busy))
    path = tmp_path / "fab/hello-world.jsonl"
    entries = history.parse(path.read_text())
    assert [(e["run"], e["result"], e["release"]) for e in entries] == [
        ("aaaa1111", "ok", "20261127T000000Z-abc"),
        ("bbbb2222", "unfinished", "20261127T000000Z-abc")]
    assert all(e["time"].endswith("Z") and e["changed"] == 0 for e in entries)

    busy.run.outcomes += [Outcome("app", CHANGED, "released"), Outcome("health", FAILED, "502")]
    busy.facts = SimpleNamespace(live_release="20261128T000000Z-d")
    sh(deploy_log.final_script(busy, "provision"))
    entries = history.parse(path.read_text() + '{"cut short')
    assert entries[0] == {**entries[0], "run": "aaaa1111", "result": "ok"}
    assert entries[1]["run"] == "bbbb2222" and entries[1]["result"] == FAILED
    assert entries[1]["failure"] == "health: 502" and entries[1]["changed"] == 1
    assert entries[1]["release"] == "20261128T000000Z-d" and len(entries) == 2
    assert entries[1]["revision"] is None  # no source resolved
    assert oct(path.stat().st_mode & 0o777) == "0o640"


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
