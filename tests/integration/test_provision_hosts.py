"""Provision on many hosts at once, as root or a sudo user, and dry-run on a fresh server."""

import pytest

from tests.conftest import fab, http_get, on, recap

# Logging in and using sudo leave these behind by themselves; anything else is a change.
LOGIN_NOISE = ("/var/log/journal/", "/var/log/lastlog", "/var/log/wtmp", "/var/log/btmp",
               "/.sudo_as_admin_successful", "/var/lib/systemd/", "/var/lib/sudo/")


def written_since(s, marker):
    found = on(s, f"find / -xdev -newer {marker} -not -path '/proc/*' -not -path '/run/*' "
                  f"-not -path '/sys/*' -not -path '/dev/*' -not -type d 2>/dev/null").split()
    return [p for p in found if not any(noise in p for noise in LOGIN_NOISE) and p != marker]


def test_dry_run_on_a_fresh_server_changes_nothing_and_shows_diffs(server):
    packages = on(server, "dpkg-query -W | md5sum")
    on(server, "touch /root/.marker; sleep 1")
    proc = fab("-H", server.name, "provision", "--dry-run", check=True)
    assert written_since(server, "/root/.marker") == []
    assert on(server, "dpkg-query -W | md5sum") == packages
    assert on(server, "ls -d /srv/hello-world /var/log/hello-world 2>&1 | grep -c 'No such'") \
        .strip() == "2"
    out = proc.stdout
    assert "would write /etc/supervisor/conf.d/hello-world.conf" in out
    assert "+++ /etc/nginx/sites-available/hello-world (wanted)" in out
    assert "+command=/srv/hello-world/current/.venv/bin/gunicorn" in out
    assert recap(proc, server.name) == "ok=0 changed=5 failed=0"


@pytest.mark.slow
def test_a_sudo_password_is_asked_for_not_guessed(make_server):
    s = make_server(sudo_password="s3cret")
    proc = fab("-H", s.name, "provision", check=False)
    assert proc.returncode != 0
    assert "sudo needs a password: run with --prompt-for-sudo-password" in proc.stdout
    assert "Traceback" not in proc.stderr
    wrong = fab("-H", s.name, "provision", env={"FABRIC_SUDO_PASSWORD": "nope"}, check=False)
    assert wrong.returncode != 0 and "wrong sudo password" in wrong.stdout + wrong.stderr
    assert on(s, "dpkg -l nginx >/dev/null 2>&1 && echo yes || echo no").strip() == "no"


def test_one_unreachable_host_does_not_stop_the_others(server):
    proc = fab("-H", f"{server.name},tom@10.213.0.250", "provision", check=False,
               env={"FABRIC_TIMEOUTS_CONNECT": "10"})  # ARP gives up (EHOSTUNREACH) in ~3 s
    assert proc.returncode == 1
    assert recap(proc, server.name) == "ok=0 changed=6 failed=0"
    assert recap(proc, "10.213.0.250") == "unreachable or failed (see above)"
    assert "cannot reach" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # a fresh server of its own: make test keeps the background install's success
def test_a_failed_background_install_stops_the_run_with_apt_s_error_and_a_rerun_ends_it(server):
    """On a fresh server apt installs nginx, supervisor and ufw beside the app step; when
    that fails, the run stops before anything uses them, and a re-run installs them."""
    pin = "/etc/apt/preferences.d/no-supervisor"  # apt may not install supervisor
    on(server, f"printf 'Package: supervisor\\nPin: release *\\nPin-Priority: -1\\n' > {pin}")
    proc = fab("-H", server.name, "provision", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "installing nginx, supervisor, ufw in the background" in proc.stdout
    assert (f"[{server.name}] packages    failed   E: Package 'supervisor' has no installation "
            "candidate") in proc.stdout
    assert "] supervisor" not in proc.stdout
    assert recap(proc, server.name) == "ok=0 changed=2 failed=1"
    on(server, f"rm {pin}")
    again = fab("-H", server.name, "provision", check=True)
    assert f"[{server.name}] packages    changed  installed nginx, supervisor, ufw" \
        in again.stdout
    assert recap(again, server.name) == "ok=1 changed=4 failed=0"  # the release was live
    assert http_get(server)[2] == "Hello world"
