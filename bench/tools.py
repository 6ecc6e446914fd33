"""The tools side by side: fab, Ansible and pyinfra, each putting the same seed stack on the
same servers (bench/peers/ holds the peers' playbook and deploy)."""

import re
import subprocess

from common import APP, PEER_BIN, PEERS, PROJECT, fab, timed

import sandbox


def ours(servers, workers=4, installer="uv"):
    """`fab provision` (the venv built by INSTALLER); (seconds, steps changed, process)."""
    elapsed, proc = fab("-H", ",".join(s.name for s in servers), "provision",
                        env={"FABRIC_APP_WORKERS": str(workers), "FABRIC_APP_INSTALLER": installer})
    return elapsed, sum(map(int, re.findall(r"changed=(\d+)", proc.stdout))), proc


def ansible(servers, workers=4):
    """The Ansible playbook, over OpenSSH with pipelining; (seconds, tasks changed, process)."""
    inventory = sandbox.STATE / "bench-inventory.ini"
    inventory.write_text("".join(f"{s.name}\n" for s in servers))
    ssh_args = (f"-F {sandbox.STATE / 'ssh_config'} -o ControlMaster=auto "
                "-o ControlPersist=60s")  # Ansible's own default, with the sandbox's hosts
    elapsed, proc = timed([PEER_BIN / "ansible-playbook", "-i", inventory, "playbook.yml",
                           "-e", f"app_src={APP}", "-e", f"workers={workers}"],
                          cwd=PEERS / "ansible",
                          env={"ANSIBLE_CONFIG": str(PEERS / "ansible/ansible.cfg"),
                               "ANSIBLE_SSH_ARGS": ssh_args})
    return elapsed, sum(map(int, re.findall(r"changed=(\d+)", proc.stdout))), proc


def pyinfra(servers, workers=4):
    """The pyinfra deploy (paramiko); (seconds, operations that changed something, process)."""
    inventory = sandbox.STATE / "bench_inventory.py"
    hosts = [(s.name, {"ssh_hostname": s.address, "ssh_user": sandbox.USER,
                       "ssh_key": str(sandbox.STATE / "id_ed25519"),
                       "ssh_known_hosts_file": str(sandbox.STATE / "known_hosts"),
                       "ssh_strict_host_key_checking": "no"}) for s in servers]
    inventory.write_text(f"hosts = {hosts!r}\n")
    elapsed, proc = timed([PEER_BIN / "pyinfra", "-y", inventory, "deploy.py"],
                          cwd=PEERS / "pyinfra",
                          env={"APP_SRC": f"{APP}/", "WORKERS": str(workers)})
    total = re.search(r"Grand total\s+\d+\s+(\d+|-)", proc.stdout)
    return elapsed, int(total.group(1)) if total and total.group(1) != "-" else 0, proc


TOOLS = {"fab": ours, "Ansible": ansible, "pyinfra": pyinfra}


def peer_versions():
    out = []
    for tool, argv in (("fab (Fabric)", [str(PROJECT / ".venv/bin/fab"), "--version"]),
                       ("Ansible", [str(PEER_BIN / "ansible-playbook"), "--version"]),
                       ("pyinfra", [str(PEER_BIN / "pyinfra"), "--version"])):
        first = subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()
        out.append(f"{tool}: {' '.join(first[:2]) if tool.startswith('fab') else first[0]}")
    return "; ".join(out)
