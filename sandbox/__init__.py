"""The local sandbox: throwaway Debian servers with systemd, booted on this machine.

Tooling, not the product: users try the tool on these servers before a real one, and the
integration tests and the bench run against them. `fab sandbox.*` (sandbox/commands.py)
drives it; sandbox/servers.py boots each server with `systemd-nspawn -b` from an overlay of
a cached base root filesystem (one per Debian release), in its own network namespace,
reaching Debian and PyPI only through a proxy on this machine. Needs Linux and root.
"""

from sandbox.servers import (  # the API the tests and the bench use
    BRIDGE,
    BRIDGE_MAC,
    DEFAULT_SUITE,
    GATEWAY,
    PROXY,
    PROXY_PORT,
    SERVER_CA,
    STATE,
    SUITES,
    USER,
    SandboxError,
    base,
    boot,
    destroy,
    down_all,
    port_open,
    proxy_pid,
    reboot_server,
    require_root_linux,
    sandbox_proxies,
    servers,
    sh,
    ssh,
    ssh_argv,
    wait_for,
)

__all__ = ["BRIDGE", "BRIDGE_MAC", "DEFAULT_SUITE", "GATEWAY", "PROXY", "PROXY_PORT",
           "SERVER_CA", "STATE", "SUITES", "USER",
           "SandboxError", "base", "boot", "destroy", "down_all", "port_open", "proxy_pid",
           "reboot_server", "require_root_linux", "sandbox_proxies", "servers", "sh", "ssh",
           "ssh_argv", "wait_for"]
