"""The sandbox boots real, isolated Debian servers, reboots them and cleans up."""

import subprocess
from pathlib import Path

import pytest

import sandbox
from tests.conftest import boot, destroy, on


@pytest.mark.slow
def test_two_servers_of_each_release_answer_ssh_as_tom_and_root_and_run_systemd(make_server):
    servers = [make_server(), make_server(suite="bookworm")]
    assert servers[0].address != servers[1].address
    for s, release in zip(servers, ["13 trixie", "12 bookworm"], strict=True):
        assert on(s, ". /etc/os-release; echo $VERSION_ID $VERSION_CODENAME").strip() == release
        assert on(s, "id -un", user="tom").strip() == "tom"
        assert on(s, "sudo -n id -un", user="tom").strip() == "root"
        assert on(s, "id -un").strip() == "root"
        assert on(s, "systemctl is-system-running").strip() == "running"
        assert on(s, "ps -p 1 -o comm=").strip() == "systemd"
        assert on(s, "systemctl is-active ssh").strip() == "active"


@pytest.mark.slow
def test_servers_are_isolated_and_a_fresh_boot_forgets_everything(make_server):
    one, two = make_server(), make_server()
    on(one, "echo mark > /root/mark")
    assert on(two, "test -e /root/mark && echo yes || echo no").strip() == "no"
    again = sandbox.boot(one.name)  # same name: replaced by a fresh server
    assert on(again, "test -e /root/mark && echo yes || echo no").strip() == "no"
    assert not (sandbox.base(again.suite) / "root/mark").exists()  # the cached base stays clean


@pytest.mark.slow
def test_servers_have_their_own_host_keys_matching_known_hosts(make_server):
    one, two = make_server(), make_server()
    keys = [on(s, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1] for s in (one, two)]
    assert keys[0] != keys[1]
    known = (sandbox.STATE / "known_hosts").read_text()
    assert all(k in known for k in keys)


@pytest.mark.slow
def test_reboot_brings_systemd_back_with_same_address_and_files(server):
    on(server, "echo kept > /root/kept")
    before = on(server, "cat /proc/sys/kernel/random/boot_id")
    sandbox.reboot_server(server.name)
    assert on(server, "cat /proc/sys/kernel/random/boot_id") != before
    assert on(server, "systemctl is-system-running").strip() == "running"
    assert on(server, "cat /root/kept").strip() == "kept"
    assert server.address in on(server, "ip -4 -o addr show eth0")


ASK_PROXY = """\
import socket, sys
host, port, method, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with socket.create_connection((host, port), timeout=10) as s:
    s.sendall(f"{method} {target} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n"
              .encode())
    print(s.recv(200).split(b"\\r\\n")[0].decode().split(" ", 2)[1])
"""


@pytest.mark.slow
def test_a_guest_reaches_only_package_hosts_and_cannot_reach_into_this_machine(server, tmp_path):
    assert oct(sandbox.STATE.stat().st_mode & 0o777) == "0o700"  # guests' setuid files stay in
    proxy = sandbox.PROXY.removeprefix("http://").replace(":", " ")

    def ask(method, target):
        """The status the proxy answers a guest's request with."""
        return on(server, f"python3 -c '{ASK_PROXY}' {proxy} {method} {target}").strip()
    assert ask("CONNECT", "pypi.org:443") == "200"
    assert ask("CONNECT", "deb.debian.org:443") == "200"
    for method, target in (("CONNECT", "127.0.0.1:22"), ("CONNECT", "localhost:443"),
                           ("GET", "http://127.0.0.1:8888/"), ("GET", "http://[::1]/"),
                           ("CONNECT", f"{sandbox.GATEWAY}:22"),
                           ("GET", "http://169.254.169.254/latest/meta-data/"),
                           ("CONNECT", "example.org:443")):
        assert ask(method, target) == "403", (method, target)
    # A guest's root replaces its host key with a link to a file of this machine: the
    # sandbox records the key it made before boot, never the file the link points to.
    secret = tmp_path / "host-secret"
    secret.write_text("ssh-ed25519 NOT-A-KEY-BUT-A-SECRET-OF-THE-HOST\n")
    on(server, f"ln -sf {secret} /etc/ssh/ssh_host_ed25519_key.pub")
    other = boot()
    try:
        assert "SECRET-OF-THE-HOST" not in (sandbox.STATE / "known_hosts").read_text()
    finally:
        destroy(other)

@pytest.mark.slow
def test_the_way_out_is_the_proxy_on_the_bridge(server):
    routes = on(server, "ip -4 route show default").split()
    assert routes[:3] == ["default", "via", sandbox.GATEWAY]
    assert sandbox.PROXY in on(server, "cat /etc/apt/apt.conf.d/01sandbox-proxy")
    assert sandbox.PROXY in on(server, "cat /etc/pip.conf")
    assert on(server, f"cmp {sandbox.SERVER_CA} /etc/ssl/certs/ca-certificates.crt && echo same") \
        .strip() == "same"


def leftovers(s):
    found = []
    if Path(f"/run/netns/{s.netns}").exists():
        found.append(f"netns {s.netns}")
    if subprocess.run(["ip", "link", "show", s.link], capture_output=True).returncode == 0:
        found.append(f"link {s.link}")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    if f"-M {s.name} " in ps:
        found.append("nspawn process")
    if str(s.dir) in Path("/proc/mounts").read_text() or s.dir.exists():
        found.append("overlay")
    return found


@pytest.mark.slow
def test_destroy_leaves_nothing_behind():
    s = boot()
    assert on(s, "true") == ""
    destroy(s)
    assert leftovers(s) == []


@pytest.mark.slow
def test_destroying_a_server_leaves_the_gateway_as_the_others_know_it(make_server):
    """The bridge keeps its own address: left to itself it takes its lowest port's, and
    destroying that port's server would leave the others sending the gateway's traffic to a
    gone address (a balancer's answers to its clients lost for many seconds)."""
    servers = [make_server(), make_server()]
    macs = {s.name: Path(f"/sys/class/net/{s.link}/address").read_text().strip()
            for s in servers}
    lowest = min(servers, key=lambda s: macs[s.name])
    other = next(s for s in servers if s is not lowest)
    reach = (f"python3 -c 'import socket; socket.create_connection((\"{sandbox.GATEWAY}\", "
             f"{sandbox.PROXY_PORT}), timeout=2).close()' && echo reached")
    assert on(other, reach).strip() == "reached"  # it knows the gateway's address now
    destroy(lowest)
    assert Path(f"/sys/class/net/{sandbox.BRIDGE}/address").read_text().strip() == \
        sandbox.BRIDGE_MAC
    assert on(other, reach).strip() == "reached"


@pytest.mark.last
def test_down_removes_every_server_the_proxy_and_the_bridge():
    servers = [boot(), boot()]
    sandbox.down_all()
    for s in servers:
        assert leftovers(s) == []
    assert sandbox.proxy_pid() is None and sandbox.sandbox_proxies() == []
    bridge = subprocess.run(["ip", "link", "show", sandbox.BRIDGE], capture_output=True)
    assert bridge.returncode != 0
    assert [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
            .stdout.split() if ns.startswith("fsb")] == []
    sandbox.down_all()  # idempotent
