"""The operator's work per host stays small: what is the same for every host of a run is
done once, however many hosts' threads ask for it at the same moment."""

import hmac
import threading
from types import SimpleNamespace

import paramiko.util
from paramiko.client import SSHClient
from paramiko.hostkeys import HostKeyEntry, HostKeys

from tasks import hostkeys, once, revision, run, templates
from tasks.site import render_site
from tests.unit.stack import S


def at_once(work, n=10):
    """Run WORK in N threads that start together; return their results."""
    start, out = threading.Barrier(n), []

    def run():
        start.wait()
        out.append(work())
    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_a_template_is_compiled_once_however_many_hosts_render_it_at_once():
    templates._template.cache_clear()
    sites = at_once(lambda: render_site(S))
    assert len(set(sites)) == 1 and "server_name" in sites[0]
    assert templates._template.cache_info().misses == 1


def test_the_apps_folder_is_read_once_per_run(monkeypatch):
    calls = []
    real = revision.local_source
    monkeypatch.setattr(revision, "local_source", lambda s: calls.append(s) or real(s))
    once.forget()
    host = SimpleNamespace(settings=S, dry_run=False)
    sources = at_once(lambda: revision.resolve(host))
    assert len(calls) == 1 and len({s.identity for s in sources}) == 1
    once.forget()  # the next run reads it again
    revision.resolve(host)
    assert len(calls) == 2


def test_packet_macs_are_compared_in_constant_time_by_the_standard_library():
    import tasks.host  # noqa: F401  (sets it)

    assert paramiko.util.constant_time_bytes_eq is hmac.compare_digest


ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIG3YKGiMQ5N4RJsRfkmL3rNiHESoitYNMqhMAy2sBSXX"
OTHER_ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIDFq/ToyuC08R8hy33jAyJMDn96l8gFLwQFHGkzFRGNr"
ECDSA = ("AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBE9MBh5lmyhvZEmTDoILJJRg7rQ9e"
         "/xDYbLoU1e6YmlTBkKvn1pUwGHhatmhOMZU178uuZz7pk19XHLr80eiLeI=")


def connection(tmp_path, host="10.0.0.5", port=22, files=("known_hosts",), system=()):
    """What tasks.hostkeys.secure reads of a Fabric connection, with a real paramiko client."""
    config = {"userknownhostsfile": " ".join(str(tmp_path / f) for f in files),
              "globalknownhostsfile": " ".join(str(tmp_path / f) for f in system) or "/none"}
    return SimpleNamespace(host=host, port=port, ssh_config=config, client=SSHClient())


def test_known_hosts_are_found_as_paramiko_finds_them_plain_hashed_and_with_a_port(tmp_path):
    hashed = HostKeys.hash_host("10.0.0.7")
    (tmp_path / "known_hosts").write_text(
        "# a comment\n\n"
        f"web1,10.0.0.5 ssh-ed25519 {ED25519}\n"
        f"{hashed} ecdsa-sha2-nistp256 {ECDSA}\n"
        f"[10.0.0.5]:2222 ecdsa-sha2-nistp256 {ECDSA}\n"
        "10.0.0.9 ssh-ed25519 not-base64!\n"  # unreadable lines are skipped, as OpenSSH does
        f"@cert-authority *.example.org ssh-ed25519 {ED25519}\n"
        f"|1|short|salt ssh-ed25519 {ED25519}\n"
        "10.0.0.9 ssh-unknown-type AAAA\n")
    once.forget()

    def found(**where):
        c = hostkeys.secure(connection(tmp_path, **where))
        return {name: key.get_base64() for name, key in
                (c.client.get_host_keys().lookup(hostkeys.lookup_name(c)) or {}).items()}
    assert found() == {"ssh-ed25519": ED25519}
    assert found(host="10.0.0.7") == {"ecdsa-sha2-nistp256": ECDSA}
    assert found(port=2222) == {"ecdsa-sha2-nistp256": ECDSA}
    assert found(host="10.0.0.9") == {} and found(host="10.0.0.8") == {}


def test_the_first_file_that_holds_a_hosts_key_of_a_type_is_the_one_checked(tmp_path):
    (tmp_path / "known_hosts").write_text(f"10.0.0.5 ssh-ed25519 {ED25519}\n")
    (tmp_path / "ssh_known_hosts").write_text(
        f"10.0.0.5 ssh-ed25519 {OTHER_ED25519}\n10.0.0.5 ecdsa-sha2-nistp256 {ECDSA}\n")
    once.forget()
    c = hostkeys.secure(connection(tmp_path, system=("ssh_known_hosts",)))
    keys = c.client.get_host_keys().lookup("10.0.0.5")
    assert list(keys) == ["ssh-ed25519", "ecdsa-sha2-nistp256"]  # the first is asked for
    assert keys["ssh-ed25519"].get_base64() == ED25519


def test_known_hosts_are_read_once_per_run_and_a_key_recorded_in_it_is_known_after(
        tmp_path, monkeypatch):
    lines = [f"10.1.{i // 250}.{i % 250} ssh-ed25519 {ED25519}" for i in range(200)]
    (tmp_path / "known_hosts").write_text("\n".join(lines) + "\n")
    parsed = []
    real = HostKeyEntry.from_line
    monkeypatch.setattr(HostKeyEntry, "from_line",
                        classmethod(lambda cls, *a: parsed.append(a) or real(*a)))
    once.forget()
    fleet = at_once(lambda: hostkeys.secure(connection(tmp_path, host="10.1.0.7")), n=50)
    assert len(parsed) == 200  # each line once, not once per host (nor per line before it)
    assert all(c.client.get_host_keys().lookup("10.1.0.7") for c in fleet)
    # a new host's key, recorded by one connection, is known to the next one of the run
    new = connection(tmp_path, host="10.2.0.1")
    hostkeys.secure(new).client._policy.missing_host_key(new.client, "10.2.0.1",
                                                       fleet[0].client.get_host_keys()
                                                       .lookup("10.1.0.7")["ssh-ed25519"])
    assert (tmp_path / "known_hosts").read_text().endswith(f"10.2.0.1 ssh-ed25519 {ED25519}\n")
    again = hostkeys.secure(connection(tmp_path, host="10.2.0.1"))
    assert again.client.get_host_keys().lookup("10.2.0.1")
    assert len(parsed) == 200


def test_the_settings_are_read_once_per_run_for_every_host(monkeypatch):
    calls = []
    monkeypatch.setattr(run, "load", lambda config: calls.append(config) or S)
    once.forget()
    hosts = at_once(lambda: run.open_host(SimpleNamespace(
        host="web", original_host="web", config=None, user="root")))
    assert len(calls) == 1 and all(h.settings == S for h in hosts)
