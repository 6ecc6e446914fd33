"""Off-site backups, the pure parts: the backup host's account and what fab reads back from
it and from restic (strictly: a name of another shape is never fetched), the status cell,
the operator's key, and a converged host that is left alone (not even reached)."""

import dataclasses
import json
import os
from types import SimpleNamespace

import pytest
from invoke import Config

from tasks.config import load
from tasks.facts import Facts
from tasks.offsite import (
    account_script,
    keep_local_key,
    local_key,
    push_lines,
    read_account,
    read_stamp,
    restic_error,
    snapshots,
)
from tasks.plan import Call
from tasks.roles import for_host, selected
from tasks.shell import DeployError, sha256
from tasks.steps import offsite

ROLES = {"web": ["127.0.0.1"], "backup": ["b1"]}
NAME = "20261204T081452Z-20261204T081415Z-37aae9da.pgdump"
PUBLIC = "ssh-ed25519 " + "A" * 68


def settings(tmp_path, **app):
    return load(Config(overrides={"app": {"database": "postgresql", "roles": ROLES,
                                          "backup_key_file": str(tmp_path / "key"), **app}}))


def test_the_backup_account_may_only_run_sftp_and_root_writes_only_where_root_owns(tmp_path):
    s = settings(tmp_path)
    script = account_script(s, PUBLIC)
    assert f'restrict,command="/usr/lib/openssh/sftp-server" {PUBLIC} fab-backup-hello-world' \
        in script
    assert "install -d -o root -g root -m 0755 /var/lib/fab-backups/hello-world " \
        "/var/lib/fab-backups/hello-world/.ssh" in script
    assert "install -d -o fab-backup-hello-world -g fab-backup-hello-world -m 0700 " \
        "/var/lib/fab-backups/hello-world/repo" in script
    assert "is an account fab did not make" in script  # a foreign account is refused


def test_the_backup_hosts_answer_is_read_strictly():
    key = "ssh-ed25519 " + "B" * 68
    assert read_account(["noise", f"hostkey {key}", "repo"], "b1") == (key, True)
    assert read_account([f"hostkey {key}"], "b1") == (key, False)
    for forged in (f"hostkey {key} extra", "hostkey ssh-rsa AAAAB3", f"hostkey {key}x"):
        with pytest.raises(DeployError, match="no ed25519 host key"):
            read_account([forged], "b1")


def test_snapshots_of_another_shape_are_left_out_and_the_newest_come_first(tmp_path):
    s = settings(tmp_path)
    older = NAME.replace("20261204T081452Z", "20261203T000000Z")
    good = [{"paths": [f"/{older}"], "id": "a" * 64, "time": "t1"},
            {"paths": [f"/{NAME}"], "id": "b" * 64, "time": "t2"}]
    forged = [{"paths": ["/../../etc/shadow"], "id": "c" * 64},
              {"paths": [f"/{NAME}", "/x"], "id": "d" * 64},
              {"paths": [f"/{NAME}"], "id": "e; rm -rf /"}, "text", {"paths": "x"}]
    text = "a warning restic printed\n" + json.dumps(good + forged) + "\n"
    assert snapshots(text, s) == [(NAME, "b" * 64, "t2"), (older, "a" * 64, "t1")]
    assert snapshots("", s) == []
    with pytest.raises(DeployError, match="not JSON"):
        snapshots("[not json", s)


def test_what_restic_says_is_cut_to_the_line_that_explains_it():
    ssh = ("Fatal: unable to open repository at sftp:fab-backup:/r: unexpected EOF"
           "subprocess ssh: ssh: connect to host 10.0.0.2 port 22: No route to host\n"
           '{"message_type":"exit_error","code":1,"message":"Fatal: unable to open"}')
    assert restic_error(ssh) == "ssh: connect to host 10.0.0.2 port 22: No route to host"
    assert restic_error("x\nFatal: wrong password or no key found\n") == \
        "Fatal: wrong password or no key found"
    assert restic_error("") == "no message"


def test_the_push_keeps_what_the_policy_says_grouped_by_the_app_not_by_file(tmp_path):
    lines = "\n".join(push_lines(settings(tmp_path, backup_keep="daily=7 monthly=6")))
    assert "--group-by host --keep-daily 7 --keep-monthly 6 --prune" in lines
    assert '--stdin --stdin-filename "$name"' in lines


def test_status_shows_the_newest_backups_age_and_a_stale_or_failed_one_is_a_problem(tmp_path):
    s = settings(tmp_path)
    day, now = 86400, 1_000_000_000
    schedule = [str(now + 100), str(now + 100 + day), str(now)]
    assert read_stamp(s, [f"{now - 3600} {NAME}", "success", *schedule]) == ("1h ago", "")
    cell, problem = read_stamp(s, [f"{now - 3 * day} {NAME}", "success", *schedule])
    assert cell == "3d ago" and "over twice the schedule (daily)" in problem
    assert "failed" in read_stamp(s, [f"{now - 60} {NAME}", "failed", *schedule])[1]
    assert read_stamp(s, ["none", "success", *schedule]) == ("none yet", "")
    assert read_stamp(s, ["123 ../../evil", "success", *schedule])[0] == "none yet"
    assert read_stamp(dataclasses.replace(s, roles={}), []) == ("-", "")


def test_the_operators_key_is_made_only_they_read_it_and_a_bad_one_is_refused(tmp_path):
    s = settings(tmp_path, backup_key_file=str(tmp_path / "cfg" / "app.key"))
    assert local_key(s) is None
    keep_local_key(s, "k" * 43)
    assert local_key(s) == "k" * 43
    assert os.stat(tmp_path / "cfg" / "app.key").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "cfg").st_mode & 0o777 == 0o700
    (tmp_path / "cfg" / "app.key").write_text("short\n")
    with pytest.raises(DeployError, match="holds no key of the shape fab makes"):
        local_key(s)


def test_the_backup_host_is_not_a_host_a_run_takes(tmp_path):
    s = settings(tmp_path)
    assert selected(s.roles, "") == ["127.0.0.1"]
    with pytest.raises(DeployError, match="is the backup host"):
        for_host(s, None, "b1")
    assert for_host(s, None, "127.0.0.1").offsite


def test_a_converged_host_is_not_reached_and_a_changed_key_sets_it_up_again(tmp_path):
    s = dataclasses.replace(settings(tmp_path), roles={**ROLES, "backup": ["127.0.0.1"]})
    keep_local_key(s, "k" * 43)
    files = {path: SimpleNamespace(sha256=sha256(content), owner="root", group="root",
                                   mode=mode)
             for path, (content, mode) in offsite.unit_files(s).items()}
    files[s.backup_file("ssh")] = SimpleNamespace(sha256="x", owner="root", group="root",
                                                  mode="600")
    marker = offsite.marker(s, "127.0.0.1:22", "k" * 43)
    h = SimpleNamespace(settings=s, facts=Facts(offsite=marker, files=files),
                        c=SimpleNamespace(config=None))
    assert offsite.plan(h).changes == []
    h.facts.offsite = offsite.marker(s, "127.0.0.1:22", "another-key" * 4)
    first, *_ = offsite.plan(h).changes[1:]
    assert isinstance(first, Call) and "set up off-site backups on 127.0.0.1" in first.would
