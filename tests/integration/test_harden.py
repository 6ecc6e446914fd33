"""`fab harden`: password and root login off, but only once key login + sudo are proven."""

import json
import os
import shlex
import subprocess

import paramiko
import pytest

import sandbox
from tasks.steps import updates
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


@pytest.mark.slow  # make test keeps harden's refusal as root
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
    assert f"would write {updates.PERIODIC}, {updates.ORIGINS} and install unattended-upgrades" \
        in proc.stdout
    assert on(server, f"ls {DROP_IN} {updates.ORIGINS} 2>&1 || true").count("cannot access") == 2
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
    assert "updates     changed  installed unattended-upgrades: security updates install daily " \
        "(never reboots by itself)" in proc.stdout
    assert as_root(server, "systemctl is-enabled apt-daily-upgrade.timer").strip() == "enabled"
    again = fab("-H", server.name, "harden", env=ENV, check=True)
    assert "harden      ok" in again.stdout and "updates     ok" in again.stdout


# A package with an update in a security archive and one with an update in the main archive,
# in local archives whose Release fields are Debian's (what the allowed origins match). The
# server's real sources are put aside: only these two updates are on offer.
FAKE_ARCHIVES = r"""set -e
. /etc/os-release
work=$(mktemp -d)
control() {
  printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: t <t@example.org>\n' "$1" "$2"
}
deb() {
  mkdir -p "$work/$1-$2/DEBIAN"
  { control "$1" "$2"; echo 'Description: t'; } > "$work/$1-$2/DEBIAN/control"
  dpkg-deb -Zgzip --build "$work/$1-$2" "$work/$1_$2_all.deb" >/dev/null
}
archive() {  # folder, suite, codename, label, package
  mkdir -p "/srv/archives/$1" && cd "/srv/archives/$1"
  f="$5_2_all.deb"
  cp "$work/$f" .
  { control "$5" 2
    printf 'Filename: ./%s\nSize: %s\n' "$f" "$(stat -c %s "$f")"
    printf 'SHA256: %s\nDescription: t\n\n' "$(sha256sum < "$f" | cut -d' ' -f1)"
  } > Packages
  { printf 'Origin: Debian\nLabel: %s\nSuite: %s\nCodename: %s\n' "$4" "$2" "$3"
    printf 'Date: %s\nSHA256:\n' "$(date -uR)"
    printf ' %s %s Packages\n' "$(sha256sum < Packages | cut -d' ' -f1)" "$(stat -c %s Packages)"
  } > Release
  echo "deb [trusted=yes] file:/srv/archives/$1 ./" >> /etc/apt/sources.list.d/archives.list
}
for p in fab-security-fix fab-feature; do
  deb $p 1; deb $p 2; dpkg -i "$work/${p}_1_all.deb" >/dev/null
done
mkdir -p /root/apt-off && mv /etc/apt/sources.list.d/*.sources /root/apt-off/ 2>/dev/null || true
rm -f /etc/apt/sources.list
archive security stable-security "$VERSION_CODENAME-security" Debian-Security fab-security-fix
archive main stable "$VERSION_CODENAME" Debian fab-feature
rm -rf /var/lib/apt/lists/* && apt-get -qq update
"""


def status_of(server, *args):
    return fab("-H", server.name, "status", *args, env=ENV)


def as_root(server, command, timeout=60):
    """COMMAND as root once root login is off: as tom, through sudo with his password."""
    return sandbox.ssh(server, f"echo {PASSWORD} | sudo -S -p '' sh -c {shlex.quote(command)}",
                       user="tom", timeout=timeout).stdout


def test_the_daily_run_installs_security_updates_only_and_status_shows_them(server):
    as_root(server, FAKE_ARCHIVES)
    before = json.loads(status_of(server, "--json").stdout)[0]
    assert before["security_updates"] == 1 and before["reboot_required"] is None
    assert "note: 1 security update(s) pending" in status_of(server).stdout
    # what apt's daily timer starts (apt.systemd.daily, which runs unattended-upgrade), now
    as_root(server, "systemctl start apt-daily-upgrade.service", timeout=300)
    installed = as_root(server, "dpkg-query -W -f='${Package} ${Version}\\n' fab-security-fix "
                           "fab-feature").splitlines()
    assert installed == ["fab-feature 1", "fab-security-fix 2"]
    after = status_of(server).stdout
    assert updates_cell(after) == "none" and "security update" not in after
    as_root(server, "echo linux-image-fab > /run/reboot-required.pkgs; touch /run/reboot-required")
    noted = status_of(server).stdout
    assert updates_cell(noted) == "none +reboot"
    assert "note: a reboot is pending (for linux-image-fab)" in noted


def updates_cell(table):
    """The UPDATES cell of the first host in `fab status`'s table."""
    header, row = table.splitlines()[:2]
    return row[header.index("UPDATES"):header.index("BOOT")].strip()
