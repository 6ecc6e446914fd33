"""Booting, reaching and removing sandbox servers: throwaway Debian 13 or 12 machines with
systemd.

Each server is a ``systemd-nspawn -b`` container booted from an overlay of one
cached base root filesystem per Debian release, in its own network namespace on a private
bridge. The servers reach Debian and PyPI only through a tinyproxy the sandbox
runs on the bridge address; there is no NAT. Needs Linux and root.
"""

import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# The checkout's .sandbox/ (sandbox/ sits beside tasks/), unless FAB_SANDBOX_DIR says otherwise.
STATE = Path(os.environ.get("FAB_SANDBOX_DIR", Path(__file__).resolve().parents[1] / ".sandbox"))
CACHE = Path(os.environ.get("FAB_SANDBOX_CACHE", "/var/cache/fab-sandbox"))
SUITES = {"trixie": "Debian 13", "bookworm": "Debian 12"}
DEFAULT_SUITE = os.environ.get("FAB_SANDBOX_SUITE", "trixie")
PACKAGES = "openssh-server,python3,sudo,iproute2,systemd-sysv,dbus,libpam-systemd"
HOST_PACKAGES = ["debootstrap", "systemd-container", "tinyproxy", "iproute2", "openssh-client"]
BRIDGE = "fsb0"
SUBNET = "10.213.0"
GATEWAY = f"{SUBNET}.1"
# The bridge's own address, fixed: left to itself a Linux bridge takes the lowest address of
# its ports, so destroying a server could change it, and every other server would send the
# gateway's traffic (a test's clients, the package proxy) to the old one for many seconds.
BRIDGE_MAC = "02:fa:b0:00:00:01"
PROXY_PORT = 8888
PROXY = f"http://{GATEWAY}:{PROXY_PORT}"
USER = "tom"
UID = 1000
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SERVER_CA = "/usr/local/share/fab-sandbox/ca.crt"
BOOT_TIMEOUT = 60
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")

# Run in the base once. Logins skip pam_systemd: under heavy load a container's logind and
# per-user managers made SSH logins stall for a minute; nothing here needs login sessions.
BASE_SETUP = f"""
set -e
useradd --create-home --uid {UID} --shell /bin/bash --groups sudo {USER}
passwd --delete {USER} >/dev/null && passwd --lock {USER} >/dev/null
rm -f /etc/ssh/ssh_host_*
apt-get clean
rm -rf /var/lib/apt/lists/*
systemctl mask systemd-timesyncd.service getty@tty1.service >/dev/null 2>&1 || true
echo 'UseDNS no' > /etc/ssh/sshd_config.d/sandbox.conf
sed -i '/pam_systemd.so/d' /etc/pam.d/common-session
"""


def base(suite):
    """The cached base of SUITE, keyed by what builds it: a change here builds a new one."""
    digest = hashlib.sha256((PACKAGES + BASE_SETUP).encode()).hexdigest()[:8]
    return CACHE / f"{suite}-base-{digest}"


class SandboxError(Exception):
    """A sandbox failure, worded for the person running it."""


@dataclass(frozen=True)
class Server:
    name: str
    index: int
    suite: str = DEFAULT_SUITE

    @property
    def address(self):
        return f"{SUBNET}.{10 + self.index}"

    @property
    def netns(self):
        return f"fsb{self.index}"

    @property
    def link(self):
        return f"fsb{self.index}"

    @property
    def dir(self):
        return STATE / "servers" / self.name

    @property
    def pid(self):
        try:
            return int((self.dir / "pid").read_text())
        except (OSError, ValueError):
            return None


def sh(*argv, check=True, capture=True, **kwargs):
    """Run a local command; raise SandboxError with its stderr when it fails."""
    proc = subprocess.run(argv, text=True, capture_output=capture, **kwargs)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or [""]
        raise SandboxError(f"`{' '.join(map(str, argv))}` failed: {detail[0]}")
    return proc


def require_root_linux():
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        raise SandboxError("the sandbox needs Linux and root (run as root on a Linux machine)")
    missing = [tool for tool in ("debootstrap", "systemd-nspawn", "tinyproxy", "ip", "ssh-keygen")
               if shutil.which(tool) is None]
    if missing:
        raise SandboxError(
            f"missing {', '.join(missing)}: apt-get install -y {' '.join(HOST_PACKAGES)}"
        )


@contextmanager
def locked():
    """Serialise sandbox changes across processes (pytest workers, parallel fab runs)."""
    STATE.mkdir(parents=True, exist_ok=True)
    # Root only: a guest's root can plant setuid files in its overlay below this folder.
    os.chmod(STATE, 0o700)
    with open(STATE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def host_sources():
    """The host's own Debian apt sources: (mirror URL, deb822 text or None)."""
    deb822 = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in deb822:
        text = path.read_text()
        match = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M)
        if match:
            return match.group(1), text
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if path.exists():
            match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", path.read_text(), re.M)
            if match:
                return match.group(1), None
    raise SandboxError("no Debian mirror in /etc/apt/sources.list*; configure apt on this machine")


def mirror_hosts():
    """The host names of the Debian mirrors the servers use (this machine's own sources)."""
    mirror, deb822 = host_sources()
    return sorted(set(re.findall(r"https?://([A-Za-z0-9.-]+)", deb822 or mirror)))


# Besides the Debian mirrors, PyPI's index and files: pip's default index on the servers.
PYPI_HOSTS = ["pypi.org", "files.pythonhosted.org"]


def check_suite(suite):
    if suite not in SUITES:
        raise SandboxError(f"unknown suite {suite!r}: use one of {', '.join(SUITES)}")


def ensure_base(suite=DEFAULT_SUITE):
    """Build SUITE's clean base root filesystem once; later calls reuse the cache."""
    check_suite(suite)
    done = base(suite)
    if (done / ".complete").exists():
        return done
    mirror, deb822 = host_sources()
    tmp = done.with_name(done.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"sandbox: building the {SUITES[suite]} ({suite}) base from {mirror} "
          "(once, about a minute)...", flush=True)
    sh("debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, str(tmp), mirror)
    # The host's deb822 sources name its own release: keep the mirror, not the suites.
    sources = deb822 and suite_sources(deb822, suite)
    if sources:
        (tmp / "etc/apt/sources.list").unlink(missing_ok=True)
        (tmp / "etc/apt/sources.list.d/debian.sources").write_text(sources)
    sh("chroot", str(tmp), "sh", "-c", BASE_SETUP)
    (tmp / ".complete").touch()
    tmp.rename(done)
    for old in CACHE.glob(f"{suite}-base*"):  # bases of earlier versions of this file
        if old != done and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)
    return done


def suite_sources(deb822, suite):
    """The host's deb822 sources with its release's name replaced by SUITE's."""
    host = re.search(r"^Suites:\s*([a-z]+)", deb822, re.M)
    if host is None:
        return None
    return re.sub(rf"\b{host.group(1)}(?=(-updates|-security|-backports)?\b)", suite, deb822)


def ensure_bridge():
    if sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
    sh("ip", "link", "set", BRIDGE, "address", BRIDGE_MAC)  # set once: never follows a port


# Each server's systemd takes several inotify instances of this machine's (128 by default):
# about 25 servers would use them all, and the next one's boot hangs.
INOTIFY_INSTANCES = 2048


def ensure_inotify():
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    if int(knob.read_text()) < INOTIFY_INSTANCES:
        knob.write_text(f"{INOTIFY_INSTANCES}\n")


def proxy_pid():
    try:
        pid = int((STATE / "tinyproxy.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def sandbox_proxies():
    """PIDs of every proxy a sandbox started, this checkout's or a crashed other's."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:3] == [b"tinyproxy", b"-d", b"-c"] and argv[3].endswith(b"/tinyproxy.conf"):
            pids.append(int(cmdline.parent.name))
    return pids


def ensure_proxy():
    """A forward proxy on the bridge: the servers' only way out (apt and pip)."""
    if proxy_pid():
        return
    conf = STATE / "tinyproxy.conf"
    # Only the package hosts, by name: never this machine's loopback or link-local services,
    # the bridge address, or anywhere else.
    allowed = STATE / "tinyproxy.allow"
    allowed.write_text("".join(f"^{re.escape(h)}$\n" for h in mirror_hosts() + PYPI_HOSTS))
    conf.write_text(
        f"User nobody\nGroup nogroup\nPort {PROXY_PORT}\nListen {GATEWAY}\nTimeout 600\n"
        f"MaxClients 200\nAllow {SUBNET}.0/24\nConnectPort 443\nConnectPort 80\n"
        f"Filter \"{allowed}\"\nFilterType ere\nFilterDefaultDeny Yes\n"
        "LogLevel Warning\n"
    )
    log = open(STATE / "tinyproxy.log", "a")
    proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)], stdout=log, stderr=log,
                            start_new_session=True)
    (STATE / "tinyproxy.pid").write_text(str(proc.pid))
    wait_for(lambda: port_open(GATEWAY, PROXY_PORT), 10, "tinyproxy to listen")


def ensure_key():
    key = STATE / "id_ed25519"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fab-sandbox", "-f", str(key))
    return key


def port_open(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SandboxError(f"timed out after {timeout}s waiting for {what}")


def servers():
    """The servers this sandbox knows about, in index order."""
    found = []
    for path in sorted((STATE / "servers").glob("*/index")):
        suite = path.with_name("suite")
        try:
            found.append(Server(path.parent.name, int(path.read_text()),
                                suite.read_text().strip() if suite.exists() else "bookworm"))
        except ValueError:
            continue
    return sorted(found, key=lambda s: s.index)


def find(name):
    for server in servers():
        if server.name == name:
            return server
    known = ", ".join(s.name for s in servers()) or "none"
    raise SandboxError(f"no sandbox server named {name!r} (running: {known})")


def running(server):
    pid = server.pid
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def write_file(root, path, text, mode=0o644, owner=(0, 0)):
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    os.chmod(target, mode)
    os.chown(target, *owner)


def seed_upper(server, upper, sudo_password):
    """Files a fresh server gets before first boot: identity, keys, proxy, CA."""
    pubkey = (STATE / "id_ed25519.pub").read_text()
    write_file(upper, "/etc/hostname", f"{server.name}\n")
    write_file(upper, "/etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {server.name}\n")
    (upper / "etc/ssh").mkdir(parents=True, exist_ok=True)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{server.name}",
       "-f", str(upper / "etc/ssh/ssh_host_ed25519_key"))
    shutil.copy(upper / "etc/ssh/ssh_host_ed25519_key.pub", server.dir / "host_key.pub")
    write_file(upper, "/root/.ssh/authorized_keys", pubkey, 0o600)
    os.chmod(upper / "root/.ssh", 0o700)
    home = f"/home/{USER}"
    write_file(upper, f"{home}/.ssh/authorized_keys", pubkey, 0o600, (UID, UID))
    os.chown(upper / home.lstrip("/"), UID, UID)
    os.chmod(upper / f"{home.lstrip('/')}/.ssh", 0o700)
    os.chown(upper / f"{home.lstrip('/')}/.ssh", UID, UID)
    rule = "ALL=(ALL:ALL) ALL" if sudo_password else "ALL=(ALL:ALL) NOPASSWD: ALL"
    write_file(upper, f"/etc/sudoers.d/{USER}", f"{USER} {rule}\n", 0o440)
    write_file(upper, "/etc/apt/apt.conf.d/01sandbox-proxy",
               f'Acquire::http::Proxy "{PROXY}";\nAcquire::https::Proxy "{PROXY}";\n')
    # Debian's ca-certificates rebuilds the bundle and drops this CA; pip reads its own copy.
    ca = CA_BUNDLE.read_text()
    write_file(upper, SERVER_CA, ca)
    write_file(upper, str(CA_BUNDLE), ca)
    write_file(upper, "/etc/pip.conf", f"[global]\nproxy = {PROXY}\ncert = {SERVER_CA}\n")
    write_file(upper, "/etc/environment",
               f"http_proxy={PROXY}\nhttps_proxy={PROXY}\nno_proxy=localhost,127.0.0.1\n")
    # Services (a build's uv among them, which reads no pip.conf) get the way out and the
    # CA as a server behind a proxy gives them: systemd's default environment.
    write_file(upper, "/etc/systemd/system.conf.d/fab-sandbox-proxy.conf",
               f'[Manager]\nDefaultEnvironment="HTTPS_PROXY={PROXY}" "SSL_CERT_FILE={SERVER_CA}" '
               f'"NO_PROXY=localhost,127.0.0.1,{SUBNET}.0/24"\n')


def allocate(name, suite):
    """The lowest free index: free here, and its link name free on this machine (another
    checkout's sandbox may share the bridge)."""
    taken = sh("ip", "-o", "link", "show", check=False).stdout + "\n" + \
        sh("ip", "netns", "list", check=False).stdout
    used = {s.index for s in servers()} | {int(i) for i in re.findall(r"\bfsb(\d+)\b", taken)}
    index = next(i for i in range(1, 240) if i not in used)
    server = Server(name, index, suite)
    server.dir.mkdir(parents=True, exist_ok=True)
    (server.dir / "suite").write_text(suite)
    (server.dir / "index").write_text(str(index))
    return server


def setup_network(server):
    ns = server.netns
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", server.link, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "link", "set", server.link, "master", BRIDGE, "up")
    for args in (["addr", "add", f"{server.address}/24", "dev", "eth0"],
                 ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"],
                 ["route", "add", "default", "via", GATEWAY]):
        sh("ip", "-n", ns, *args)


def start(server):
    """Boot the container under a loop that boots it again when it reboots (exit 133)."""
    root = base(server.suite)
    nspawn = [
        "systemd-nspawn", "-D", str(root), f"--overlay={root}:{server.dir / 'upper'}:/",
        "-b", "--register=no", f"--network-namespace-path=/run/netns/{server.netns}",
        "-M", server.name, "--console=pipe", "--keep-unit",
        "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
    ]
    loop = 'while :; do "$@"; rc=$?; [ "$rc" = 133 ] || exit "$rc"; done'
    log = open(server.dir / "console.log", "a")
    proc = subprocess.Popen(["sh", "-c", loop, "sandbox-loop", *nspawn], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, start_new_session=True)
    (server.dir / "pid").write_text(str(proc.pid))


def ssh_argv(server, user="root"):
    return ["ssh", "-F", str(STATE / "ssh_config"), "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=3", "-l", user, server.name]


def ssh(server, command, user="root", check=True, timeout=60):
    return sh(*ssh_argv(server, user), command, check=check, timeout=timeout)


def wait_ready(server, timeout=BOOT_TIMEOUT):
    """Wait until sshd answers and systemd has finished booting."""
    def up():
        if not port_open(server.address, 22, 0.5):
            return False
        try:
            state = ssh(server, "timeout 5 systemctl is-system-running --wait", check=False,
                        timeout=15).stdout.strip()
        except subprocess.TimeoutExpired:
            return False
        return state in ("running", "degraded")
    wait_for(up, timeout, f"{server.name} to boot (see {server.dir / 'console.log'})")


def write_ssh_config():
    """An ssh_config and known_hosts for every server, for `fab -S` and plain ssh."""
    key = STATE / "id_ed25519"
    entries, known = [], []
    for server in servers():
        pub = server.dir / "host_key.pub"  # a copy made before boot: the guest cannot link it
        if pub.exists():
            keytype, blob = pub.read_text().split()[:2]
            known.append(f"{server.name},{server.address} {keytype} {blob}\n")
        entries.append(
            f"Host {server.name}\n    HostName {server.address}\n    User {USER}\n"
            f"    IdentityFile {key}\n    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {STATE / 'known_hosts'}\n"
            f"    StrictHostKeyChecking yes\n    HostKeyAlias {server.name}\n\n"
        )
    (STATE / "known_hosts").write_text("".join(known))
    (STATE / "ssh_config").write_text("".join(entries))


def boot(name, sudo_password=None, suite=DEFAULT_SUITE):
    """Boot one fresh server called NAME (replacing any server of that name) running SUITE."""
    if not NAME_RE.fullmatch(name):
        raise SandboxError(f"bad server name {name!r}: use lowercase letters, digits and '-'")
    check_suite(suite)
    require_root_linux()
    with locked():
        ensure_base(suite)
        ensure_key()
        ensure_bridge()
        ensure_proxy()
        ensure_inotify()
        if (STATE / "servers" / name).exists():
            destroy(name)
        server = allocate(name, suite)
        upper = server.dir / "upper"
        upper.mkdir()
        seed_upper(server, upper, sudo_password)
        setup_network(server)
        write_ssh_config()
        start(server)
    wait_ready(server)
    if sudo_password:
        ssh(server, f"echo {USER}:{sudo_password} | chpasswd")
    return server


def kill_tree(server):
    pid = server.pid
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)  # the restart loop and nspawn itself
        except OSError:
            pass
    if Path(f"/run/netns/{server.netns}").exists():
        pids = sh("ip", "netns", "pids", server.netns, check=False).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def destroy(name):
    """Stop one server and remove everything it had: processes, network, overlay."""
    server = next((s for s in servers() if s.name == name), None)
    if server is None:
        return
    kill_tree(server)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sh("ip", "netns", "pids", server.netns,
                                               check=False).stdout.strip():
        time.sleep(0.1)
    sh("ip", "link", "del", server.link, check=False)
    sh("ip", "netns", "del", server.netns, check=False)
    shutil.rmtree(server.dir, ignore_errors=True)
    write_ssh_config()


def down_all():
    """Remove every server, the proxy and the bridge; also leftovers of a crashed run."""
    with locked():
        for server in servers():
            destroy(server.name)
        for ns in sh("ip", "netns", "list", check=False).stdout.split("\n"):
            ns = ns.split(" ")[0]
            if ns.startswith("fsb"):
                for p in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                    os.kill(int(p), signal.SIGKILL)
                sh("ip", "netns", "del", ns, check=False)
        for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
            link = line.split(":")[1].strip().split("@")[0]
            if re.fullmatch(r"fsb\d+", link):
                sh("ip", "link", "del", link, check=False)
        for pid in sandbox_proxies():
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not sandbox_proxies(), 10, "the proxy to stop")
        (STATE / "tinyproxy.pid").unlink(missing_ok=True)
        sh("ip", "link", "del", BRIDGE, check=False)
        shutil.rmtree(STATE / "servers", ignore_errors=True)
        write_ssh_config()


def reboot_server(name, timeout=BOOT_TIMEOUT):
    """Reboot NAME for real and wait until systemd is running and sshd answers."""
    server = find(name)
    boot_id = ssh(server, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    ssh(server, "systemctl reboot", check=False)

    def rebooted():
        proc = ssh(server, "cat /proc/sys/kernel/random/boot_id", check=False, timeout=10)
        return proc.returncode == 0 and proc.stdout.strip() not in ("", boot_id)
    wait_for(rebooted, timeout, f"{name} to come back from reboot")
    wait_ready(server, timeout)
    return server
