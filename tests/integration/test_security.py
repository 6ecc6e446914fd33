"""Connections and bad input: host keys, connection failures, injection attempts.

Every failure must be one line naming the host and the fix, a non-zero exit, no
traceback, and nothing changed on the server.
"""

import os
import shlex
import subprocess

import pytest

import sandbox
from tests.conftest import FAB, PROJECT, fab, on


def own_ssh_config(tmp_path, server, user="tom", port=22, key=None):
    """An ssh_config without a known_hosts of its own: ~/.ssh/known_hosts (HOME=tmp) applies."""
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {server.name}\n    HostName {server.address}\n    User {user}\n"
                      f"    Port {port}\n    IdentityFile {key or sandbox.STATE / 'id_ed25519'}\n")
    return config


def run(tmp_path, config, *args, env=None):
    """fab with its own ssh_config and HOME (so ~/.ssh/known_hosts is the test's)."""
    return subprocess.run([FAB, "-S", str(config), *args], cwd=PROJECT, capture_output=True,
                          text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HOME": str(tmp_path), **(env or {})})


def one_line_failure(proc):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_unknown_host_is_recorded_then_a_changed_key_is_refused(server, tmp_path):
    config = own_ssh_config(tmp_path, server)
    known = tmp_path / ".ssh/known_hosts"
    first = run(tmp_path, config, "-H", server.name, "releases")
    assert first.returncode == 0, first.stderr
    recorded = known.read_text()
    key = on(server, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
    assert recorded == f"{server.address} ssh-ed25519 {key}\n"
    assert run(tmp_path, config, "-H", server.name, "releases").returncode == 0
    assert known.read_text() == recorded  # known now: nothing added
    # the server gets a new identity (as after a re-install, or an impostor)
    on(server, "rm /etc/ssh/ssh_host_ed25519_key*; "
               "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key; "
               "systemctl restart ssh")
    line = one_line_failure(run(tmp_path, config, "-H", server.name, "releases"))
    assert f"REFUSED: the host key of {server.address} changed" in line
    assert str(known) in line and "ssh-keygen -R" in line and "SHA256:" in line


def test_strict_mode_refuses_unknown_hosts(server, tmp_path):
    config = own_ssh_config(tmp_path, server)
    proc = run(tmp_path, config, "-H", server.name, "releases",
               env={"FABRIC_APP_HOST_KEYS": "strict"})
    line = one_line_failure(proc)
    assert f"REFUSED: {server.address} is not in" in line and "ssh-keyscan" in line
    assert not (tmp_path / ".ssh/known_hosts").exists()


def test_ssh_configs_global_known_hosts_and_strict_checking_are_honoured(server, tmp_path):
    config = own_ssh_config(tmp_path, server)
    strict = config.read_text() + "    StrictHostKeyChecking yes\n"
    config.write_text(strict)
    line = one_line_failure(run(tmp_path, config, "-H", server.name, "releases"))
    assert f"REFUSED: {server.address} is not in" in line
    assert not (tmp_path / ".ssh/known_hosts").exists()  # strict: nothing recorded
    # pinned only in the system-wide file: accepted, nothing recorded, a new key refused
    pinned = tmp_path / "ssh_known_hosts"
    keytype, key = on(server, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    pinned.write_text(f"{server.address} {keytype} {key}\n")
    config.write_text(strict + f"    GlobalKnownHostsFile {pinned}\n")
    assert run(tmp_path, config, "-H", server.name, "releases").returncode == 0
    assert not (tmp_path / ".ssh/known_hosts").exists()
    on(server, "rm /etc/ssh/ssh_host_ed25519_key*; "
               "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key; "
               "systemctl restart ssh")
    line = one_line_failure(run(tmp_path, config, "-H", server.name, "releases"))
    assert f"REFUSED: the host key of {server.address} changed" in line and str(pinned) in line

def test_each_host_is_offered_its_own_key_only(make_server, tmp_path):
    """Hosts with a key each in ~/.ssh/config: the second is never offered the first's.
    Fabric wrote each host's IdentityFile into the config all connections share, so host
    N offered N-1 wrong keys first and sshd's MaxAuthTries refused it (here: 1)."""
    first, second = make_server(), make_server()
    lines = []
    for s in (first, second):
        key = tmp_path / f"key-{s.name}"
        sandbox.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        on(s, f"echo {shlex.quote(key.with_suffix('.pub').read_text().strip())} "
              "> ~tom/.ssh/authorized_keys")
        lines += [f"Host {s.name}", f"    HostName {s.address}", "    User tom",
                  f"    IdentityFile {key}", "    IdentitiesOnly yes"]
    on(second, "echo 'MaxAuthTries 1' > /etc/ssh/sshd_config.d/one-try.conf && "
               "systemctl reload ssh")
    config = tmp_path / "ssh_config"
    config.write_text("\n".join(lines) + "\n")
    proc = run(tmp_path, config, "-H", f"{first.name},{second.name}", "releases")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed" not in proc.stdout and "refused" not in proc.stdout


@pytest.mark.parametrize("case, fragment", [
    ("wrong key", "SSH login as tom was refused"),
    ("wrong user", "SSH login as nosuchuser was refused"),
    ("refused port", "connection refused at"),
])
def test_connection_failures_are_one_line_with_the_fix(session_server, tmp_path, case, fragment):
    s = session_server
    kwargs = {}
    if case == "wrong key":
        other = tmp_path / "other_key"
        sandbox.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other))
        kwargs["key"] = other
    if case == "wrong user":
        kwargs["user"] = "nosuchuser"
    if case == "refused port":
        kwargs["port"] = 2222
    config = own_ssh_config(tmp_path, s, **kwargs)
    line = one_line_failure(run(tmp_path, config, "-H", s.name, "provision"))
    assert line.startswith(f"[{s.name}] failed") and fragment in line


def test_a_user_who_may_not_sudo_is_told_so_and_nothing_changes(server):
    on(server, "useradd -m -s /bin/bash bob && echo bob:pw-bob-1 | chpasswd && "
               "install -d -o bob -m 700 ~bob/.ssh && "
               "install -o bob -m 600 /root/.ssh/authorized_keys ~bob/.ssh/")
    proc = fab("-H", f"bob@{server.name}", "provision", env={"FABRIC_SUDO_PASSWORD": "pw-bob-1"})
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert (f"[{server.name}] facts       failed   this user may not use sudo: connect as root "
            "or add the user to the sudo group") in proc.stdout
    assert on(server, "dpkg-query -W nginx 2>&1 || true").startswith("dpkg-query: no packages")


def test_unknown_host_name_is_one_line(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("")
    line = one_line_failure(run(tmp_path, config, "-H", "tom@no-such-host.invalid", "status"))
    assert "unknown host no-such-host.invalid" in line


@pytest.mark.slow
def test_a_server_that_is_not_debian_is_refused_before_any_change(server):
    on(server, "sed -i 's/^ID=debian/ID=fedora/; s/^ID_LIKE=.*//' /etc/os-release")
    proc = fab("-H", server.name, "provision")
    assert proc.returncode == 1
    assert "] packages    failed   not a Debian/Ubuntu server (ID=fedora)" in proc.stdout
    assert on(server, "ls /srv/hello-world 2>&1 || true").startswith("ls: cannot access")


INJECTIONS = {
    "app.name": ("FABRIC_APP_NAME", "x; touch /tmp/pwned"),
    "app.user": ("FABRIC_APP_USER", "tom$(touch /tmp/pwned)"),
    "app.dir": ("FABRIC_APP_DIR", "/srv/app`touch /tmp/pwned`"),
    "app.server_name": ("FABRIC_APP_SERVER_NAME", "a.com; } server { listen 81"),
    "app.module": ("FABRIC_APP_MODULE", "app:app & touch /tmp/pwned"),
    "app.health_path": ("FABRIC_APP_HEALTH_PATH", "/ $(touch /tmp/pwned)"),
    "app.keep_releases": ("FABRIC_APP_KEEP_RELEASES", "5; touch /tmp/pwned"),
    "app.workers": ("FABRIC_APP_WORKERS", "4 && touch /tmp/pwned"),
    "app.tls": ("FABRIC_APP_TLS", "self-signed; touch /tmp/pwned"),
    "app.letsencrypt_email": ("FABRIC_APP_LETSENCRYPT_EMAIL", "a@b.org -d $(touch /tmp/pwned)"),
}


@pytest.mark.parametrize("key", sorted(INJECTIONS))
def test_injection_through_config_is_refused_before_connecting(session_server, key):
    var, value = INJECTIONS[key]
    proc = fab("-H", session_server.name, "provision", env={var: value})
    assert proc.returncode == 2
    assert f"config: {key}=" in proc.stderr or f"config: {var}:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # no step ran: nothing was even connected to
    assert on(session_server, "ls /tmp/pwned 2>&1 || true").startswith("ls: cannot access")
