"""Facts: one read-only script, parsed into fields with defaults."""



from tasks import facts as facts_module
from tasks.facts import Facts, script
from tasks.steps import needs
from tests.unit.answers import answer
from tests.unit.stack import CONVERGED, S, parse


def test_parse_reads_every_section():
    f = parse(CONVERGED)
    assert f.debian_like and f.user_exists and f.apt_age == 120
    assert f.packages == {"nginx": True, "python3-venv": True, "supervisor": True, "ufw": True}
    assert f.files["/etc/supervisor/conf.d/hello-world.conf"].sha256 == "abc123"
    assert f.modes["/srv"] == ("root", "root", "700")
    assert f.links["/srv/hello-world/current"] == "releases/20260101T000000Z-aaaaaaaa"
    assert f.current_hash == "feedface" and set(f.venvs) == {"0123456789abcdef"}
    assert f.releases == ["20250101T000000Z-bbbbbbbb", "20260101T000000Z-aaaaaaaa"]
    assert (f.program_state, f.program_pid) == ("RUNNING", 4242)
    assert f.program.release == "/srv/hello-world/releases/20260101T000000Z-aaaaaaaa"
    assert f.running["hello-world-worker"] == ("", 0, "")  # not loaded
    assert f.services["ufw"] == ("enabled", "active")
    assert f.ufw_active and f.ufw_rules == {"allow 2222/tcp", "allow 80/tcp"}
    assert f.ssh_port == 2222


def test_parse_of_a_fresh_server():
    f = parse("@@os_id\ndebian\n@@os_like\n\n@@packages\n@@apt_age\n@@user_exists\n@@running\n"
              "@@ufw_active\n@@ssh_port\n\n")
    assert f.packages == {} and f.apt_age is None and not f.user_exists
    assert f.program_state == "" and not f.ufw_active and f.ssh_port == 22


def test_fact_script_quotes_paths_and_is_read_only():
    text = script(S, needs(S))
    for verb in ("rm ", "mv ", "install ", "apt-get", "useradd", "ufw allow", "systemctl enable"):
        assert verb not in text
    assert "/srv/hello-world/current" in text


def test_every_fact_is_declared_with_its_shell_and_parser():
    from dataclasses import fields
    text = script(S, needs(S))
    for f in fields(Facts):
        assert (f'echo "$mark {f.name}"\n' in text) == (f.name != "needs")
        assert ("fact" in f.metadata) == (f.name != "needs")
    assert facts_module.parse(answer("")) == Facts()  # every fact has a default
