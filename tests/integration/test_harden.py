"""`fab harden`: password and root login off, but only once key login + sudo are proven."""

import os
import subprocess

import paramiko
import pytest

import sandbox
from tasks.steps.harden import DROP_IN
from tests.conftest import FAB, PROJECT, booted, fab, on

PASSWORD = "pw-Tom-4711"
ENV = {"FABRIC_SUDO_PASSWORD": PASSWORD}


def login(server, user, password=None):
    """True if SSH accepts USER with PASSWORD (or, without one, the sandbox key)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(server.address, username=user, password=password, timeout=10,
                       key_filename=None if password else str(sandbox.STATE / "id_ed25519"),
                       look_for_keys=False, allow_agent=False)
        return client.exec_command("true")[1].channel.recv_exit_status() == 0
    except paramiko.AuthenticationException:
        return False
    finally:
        client.close()


@pytest.fixture(scope="module")
def server():
    with booted(sudo_password=PASSWORD) as s:
        yield s


def test_as_root_it_refuses_to_cut_off_its_own_login(server):
    proc = fab("-H", f"root@{server.name}", "harden", env=ENV)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"[{server.name}] failed   connect as the sudo user who keeps access" in proc.stderr
    assert on(server, f"ls {DROP_IN} 2>&1 || true").startswith("ls: cannot access")


def test_without_a_working_key_nothing_changes(server, tmp_path):
    """Logged in by password only: the fresh key-only proof fails before any change."""
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {server.name}\n    HostName {server.address}\n    User tom\n")
    settings = tmp_path / "password.yaml"
    settings.write_text(f"connect_kwargs:\n  password: {PASSWORD}\n  look_for_keys: false\n"
                        "  allow_agent: false\n")
    proc = subprocess.run([FAB, "-S", str(config), "-f", str(settings), "-H", server.name,
                           "harden"], cwd=PROJECT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, "HOME": str(tmp_path), **ENV})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "harden      failed   key login as tom with sudo failed on a fresh connection" \
        in proc.stdout and "ssh-copy-id" in proc.stdout
    assert on(server, f"ls {DROP_IN} 2>&1 || true").startswith("ls: cannot access")
    assert login(server, "tom", PASSWORD)


def test_dry_run_shows_the_change_and_makes_none(server):
    proc = fab("-H", server.name, "harden", "--dry-run", env=ENV, check=True)
    assert f"would write {DROP_IN}" in proc.stdout and "+PermitRootLogin no" in proc.stdout
    assert on(server, f"ls {DROP_IN} 2>&1 || true").startswith("ls: cannot access")
    assert login(server, "tom", PASSWORD) and login(server, "root")


def test_harden_leaves_key_login_and_refuses_passwords_and_root(server):
    assert login(server, "tom", PASSWORD) and login(server, "root")
    proc = fab("-H", server.name, "harden", env=ENV, check=True)
    assert "harden      changed  password and root login turned off; key login proven" \
        in proc.stdout
    assert not login(server, "tom", PASSWORD)
    assert not login(server, "root")
    assert login(server, "tom")
    assert sandbox.ssh(server, f"echo {PASSWORD} | sudo -S -p '' id -u", user="tom").stdout \
        .strip() == "0"
    # the dead-man switch was cancelled: nothing undoes the change later
    assert sandbox.ssh(server, "systemctl is-active fab-sshd-revert.timer", user="tom",
                       check=False).stdout.strip() == "inactive"
    again = fab("-H", server.name, "harden", env=ENV, check=True)
    assert "harden      ok" in again.stdout
