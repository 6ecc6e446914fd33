"""The packages step: apt, detached, what the later steps need in the background."""


import pytest
from invoke import Config

from tasks.config import load
from tasks.shell import DeployError
from tasks.steps import needs, packages
from tests.unit.stack import LETSENCRYPT, TLS, S, facts_for


def test_packages_installs_only_what_is_missing_and_refreshes_stale_lists():
    f = facts_for(S, os_id="debian", packages={"nginx": True, "ufw": False}, apt_age=10)
    assert packages.missing(S, f) == (["python3-venv", "supervisor", "ufw"], False)
    f.apt_age = None
    assert packages.missing(S, f)[1] is True
    done = facts_for(S, os_id="ubuntu", packages=dict.fromkeys(needs(S).packages, True),
                     apt_age=None)
    assert packages.missing(S, done) == ([], False)  # nothing to install: no refresh either


def test_packages_refuses_other_distributions():
    with pytest.raises(DeployError, match="not a Debian/Ubuntu server .ID=fedora"):
        packages.missing(S, facts_for(S, os_id="fedora", os_like="rhel"))
    packages.missing(S, facts_for(S, os_id="raspbian", os_like="debian"))


def test_tls_packages_are_wanted_only_with_tls():
    assert "openssl" not in needs(S).packages and "openssl" in needs(TLS).packages
    assert "certbot" in needs(LETSENCRYPT).packages


def test_packages_plan_one_apt_command_refreshing_stale_lists():
    live = facts_for(S, os_id="debian", packages={"nginx": True}, apt_age=None,
                     current_hash="c0ffee")
    (command,) = packages.plan(S, live).changes
    assert command.said == "installed python3-venv, supervisor, ufw"
    # apt runs in a systemd service of its own, so a lost connection cannot cut it short
    assert "systemd-run --quiet --wait --collect --unit=fab-hello-world.apt-" in command.script
    inner = command.script.split(" sh -c ", 1)[1]
    assert inner.index("apt-get -q update") < inner.index("install python3-venv")
    assert "dpkg" not in inner and "apt-later" not in command.script


def test_packages_on_a_fresh_server_install_what_the_app_needs_first_the_rest_beside_it():
    fresh = facts_for(S, os_id="debian", apt_age=None)
    (command,) = packages.plan(S, fresh).changes
    assert command.said == ("installed python3-venv, installing nginx, supervisor, ufw in the "
                            "background")
    waited, started = command.script.split("|| exit $?\n")
    assert "--wait" in waited and "install python3-venv" in waited and "nginx" not in waited
    assert "--wait" not in started and "--unit=fab-hello-world.apt-later-" in started
    # the lists are fresh by then: refreshed only if a download fails
    assert "apt-get -q update" not in started.split("install nginx supervisor ufw")[0]
    # the database's engine is installed first too: the database step runs beside the rest
    pg = load(Config(overrides={"app": {"database": "postgresql"}}))
    (command,) = packages.plan(pg, facts_for(pg, os_id="debian", apt_age=None)).changes
    assert command.said.startswith("installed postgresql, python3-venv, installing nginx")
    # nothing the app needs is missing: nothing to install beside, so all at once
    bare = facts_for(S, os_id="debian", apt_age=None, packages={"python3-venv": True})
    assert packages.plan(S, bare).changes[0].said == "installed nginx, supervisor, ufw"


def test_work_in_the_background_leaves_its_status_and_output_for_awaited(tmp_path, monkeypatch):
    import subprocess

    from tasks import units as core
    monkeypatch.setattr(core, "WORK_DIR", str(tmp_path))
    result = core.result_file("fab-x.apt-later")

    def collect():
        return subprocess.run(["sh", "-c", core.awaited("fab-x.apt-later", 5)],
                              capture_output=True, text=True)
    subprocess.run(["sh", "-c", core.recording("set -e\necho apt said\necho installed a, b",
                                               result)], check=True)
    done = collect()
    assert (done.returncode, done.stdout) == (0, "apt said\ninstalled a, b\n")
    assert list(tmp_path.iterdir()) == []  # collected once
    subprocess.run(["sh", "-c", core.recording("set -e\necho E: no nginx >&2\nfalse\necho x",
                                               result)], check=True)
    failed = collect()
    assert (failed.returncode, failed.stderr) == (1, "E: no nginx\n")
    (tmp_path / "fab-x.apt-later.result.out").write_text("")  # a unit stopped mid-way
    stopped = collect()
    assert stopped.returncode == 1 and "fab-x.apt-later ended without a result" in stopped.stderr
    assert list(tmp_path.iterdir()) == []


def test_packages_repair_an_interrupted_dpkg_first_even_with_nothing_missing():
    f = facts_for(S, os_id="debian", packages=dict.fromkeys(needs(S).packages, True), apt_age=5,
              dpkg_interrupted=True)
    (command,) = packages.plan(S, f).changes
    assert command.said == "repaired an interrupted dpkg (dpkg --configure -a)"
    assert "--configure -a" in command.script and "install" not in command.script.split(
        " sh -c ", 1)[1].replace("install -d", "")
    f.packages["nginx"] = False
    (command,) = packages.plan(S, f).changes
    assert command.said.endswith(", installed nginx")
    inner = command.script.split(" sh -c ", 1)[1]
    assert inner.index("--configure -a") < inner.index("install nginx")
