"""`fab sandbox.*`: boot, list, reboot and remove the local sandbox servers."""

import time

from invoke import Exit, task

from sandbox.servers import (
    DEFAULT_SUITE,
    STATE,
    SUITES,
    SandboxError,
    boot,
    down_all,
    reboot_server,
    require_root_linux,
    running,
    servers,
)


def usage(server):
    return f"fab -S {STATE / 'ssh_config'} -H {server.name} provision"


def describe(server):
    state = "running" if running(server) else "stopped"
    return f"{server.name:<12} {server.address:<14} {server.suite:<9} {state:<8} {usage(server)}"


def guarded(fn):
    """Run a sandbox action, turning SandboxError into one line and exit 1."""
    try:
        return fn()
    except SandboxError as e:
        raise Exit(f"sandbox: {e}", code=1) from None


@task(help={
    "count": "how many servers to boot (default 1)",
    "sudo-password": "give user tom this sudo password (default: passwordless sudo)",
    "suite": f"the Debian release: {' or '.join(f'{k} ({v})' for k, v in SUITES.items())}; "
             f"default {DEFAULT_SUITE}",
})
def up(c, count=1, sudo_password=None, suite=DEFAULT_SUITE):
    """Boot N fresh Debian 13 servers (--suite bookworm: 12), sandbox-1..N; show how to reach."""
    def run():
        started = time.monotonic()
        booted = [boot(f"sandbox-{i}", sudo_password, suite) for i in range(1, count + 1)]
        print(f"sandbox: {len(booted)} server(s) up in {time.monotonic() - started:.1f}s")
        for server in booted:
            print(describe(server))
    guarded(run)


@task
def down(c):
    """Stop every sandbox server and remove its network, overlay and the proxy."""
    guarded(lambda: (require_root_linux(), down_all()))
    print("sandbox: down")


@task(name="list")
def list_(c):
    """Show the sandbox servers: name, address, state and how to reach them."""
    known = servers()
    for server in known:
        print(describe(server))
    if not known:
        print("sandbox: no servers (start some with `fab sandbox.up`)")


@task(help={"name": "the server to reboot, e.g. sandbox-1"})
def reboot(c, name):
    """Reboot one sandbox server for real and wait until it is back."""
    server = guarded(lambda: reboot_server(name))
    print(f"sandbox: {server.name} rebooted and running at {server.address}")
