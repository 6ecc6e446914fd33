"""Pure parts of `logs` and `status`: commands built, output parsed, lines prefixed."""

import io
import sys
import time

import pytest
from invoke import Config

from tasks import status as status_module
from tasks.config import load
from tasks.logs import log_files, logs_script
from tasks.output import LinePrefixer
from tasks.status import status_script
from tests.unit.answers import answer, probe_line

S = load(Config(overrides={"app": {}}))


def parse_status(host, s, text):
    """Status from a server's answer written as `@@name` blocks."""
    return status_module.parse_status(host, s, answer(text))


HEALTHY = """\
@@running
hello-world RUNNING 4242 "/srv/hello-world/releases/20261124T182935Z-2539ae32"
@@workers
4
@@uptime
   3723
@@nginx
active
0
nginx: configuration file /etc/nginx/nginx.conf test is successful
@@ufw
Status: active
22/tcp
80/tcp
@@release
releases/20261124T182935Z-2539ae32
1764008975
@@enabled
supervisor enabled
nginx enabled
ufw enabled
@@probe
""" + probe_line(1, 200, 3.2, "Hello world") + "\n"


def test_a_healthy_server_has_no_problems():
    st = parse_status("web1", S, HEALTHY)
    assert st.healthy and st.problems == []
    assert (st.app_state, st.app_pid, st.app_uptime, st.workers) == ("RUNNING", 4242, "1:02:03", 4)
    assert st.ufw_allowed == ["22/tcp", "80/tcp"]
    assert st.release == "20261124T182935Z-2539ae32" and st.deployed_at.endswith("Z")
    assert (st.http_status, st.http_latency_ms, st.http_body_ok) == (200, 3.2, True)


def test_every_unhealthy_field_is_named():
    text = (HEALTHY.replace("RUNNING 4242", "BACKOFF 0")
            .replace("\nactive\n0\n", "\ninactive\n1\n")
            .replace("nginx: configuration file /etc/nginx/nginx.conf test is successful",
                     "nginx: [emerg] unexpected end of file")
            .replace("Status: active", "Status: inactive")
            .replace("nginx enabled", "nginx disabled")
            .replace(probe_line(1, 200, 3.2, "Hello world"),
                     probe_line(0, 502, 1.0, "Bad Gateway")))
    problems = parse_status("web1", S, text).problems
    assert problems == ["app is BACKOFF", "nginx is not active",
                        "nginx -t failed: nginx: [emerg] unexpected end of file",
                        "ufw is not active",
                        "HTTP / through nginx gave 502", "nginx is not enabled at boot"]


def test_with_tls_the_certificate_expiry_is_shown_and_checked():
    tls = load(Config(overrides={"app": {"tls": "self-signed"}}))
    assert "openssl x509 -enddate" not in status_script(S)
    assert "-in /etc/hello-world/tls/fullchain.pem" in status_script(tls)
    later = time.strftime("%b %e %H:%M:%S %Y GMT", time.gmtime(time.time() + 90 * 86400))
    st = parse_status("web1", tls, HEALTHY + f"@@tls\n{later}\n")
    assert st.healthy and st.tls_days_left in (89, 90) and len(st.tls_expires) == 10
    end = time.gmtime(time.time() + 5 * 86400 + 60)
    soon = time.strftime("%b %e %H:%M:%S %Y GMT", end)
    assert parse_status("web1", tls, HEALTHY + f"@@tls\n{soon}\n").problems == \
        [f"the certificate expires in 5 days ({time.strftime('%Y-%m-%d', end)})"]
    assert parse_status("web1", tls, HEALTHY + "@@tls\n").problems == \
        ["no certificate at /etc/hello-world/tls/fullchain.pem"]


def test_logs_components_and_quoting():
    assert log_files(S, "access") == ["/var/log/nginx/hello-world.access.log"]
    assert len(log_files(S, "all")) == 5
    script = logs_script(log_files(S, "app"), 50, "a'b; rm -rf /", follow=False)
    assert "grep -h -e 'a'\"'\"'b; rm -rf /'" in script and "tail -n 50" in script
    follow = logs_script(log_files(S, "access"), 5, None, follow=True)
    assert "exec tail -F -n 5 -q" in follow


def test_streamed_output_is_prefixed_line_by_line(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    sink = LinePrefixer("web1")
    sink.write("first li")
    sink.write("ne\r\nsecond\npartial")
    assert out.getvalue() == "[web1] first line\n[web1] second\n"


def test_long_work_shows_a_status_line_on_a_terminal_only(monkeypatch):
    from tasks.output import progress, say

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stdout", stream)
        with progress("web1", "app: building virtualenv"):
            time.sleep(1.3)
            say("web1", "a line in between")
        out = stream.getvalue()
        assert ("[web1] app: building virtualenv 1s" in out) is shown
        assert "[web1] a line in between\n" in out
        assert out.endswith("\r\033[K") is shown  # the status line is gone at the end


def test_a_server_too_loaded_to_greet_gets_one_more_try_and_no_more(monkeypatch):
    from paramiko.ssh_exception import SSHException

    from tasks.host import Host

    class Flaky:
        is_connected, host = False, "web1"

        def __init__(self, failures, message):
            self.failures, self.message, self.opened = failures, message, 0

        def open(self):
            self.opened += 1
            if self.opened <= self.failures:
                raise SSHException(self.message)

    monkeypatch.setattr("tasks.host.time.sleep", lambda seconds: None)
    once = Flaky(1, "Error reading SSH protocol banner")
    Host(once).connect()
    assert once.opened == 2
    for flaky in (Flaky(2, "Error reading SSH protocol banner"), Flaky(1, "Bad handshake")):
        with pytest.raises(SSHException):
            Host(flaky).connect()
        assert flaky.opened == flaky.failures


@pytest.mark.parametrize("task", ["deploy", "provision", "harden", "status", "step.nginx",
                                  "destroy"])
def test_a_task_without_a_host_says_how_to_give_one_in_one_line(task):
    import subprocess
    from pathlib import Path

    project = Path(__file__).resolve().parents[2]
    proc = subprocess.run([str(project / ".venv/bin/fab"), task], cwd=project, text=True,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"{task}: no host given: run it as `fab -H user@server "
                                   f"{task}` (or list the hosts in app.roles)")


def test_dry_after_a_task_is_its_dry_run_and_before_it_is_refused_with_the_fix():
    import subprocess
    from pathlib import Path

    project = Path(__file__).resolve().parents[2]
    fab = str(project / ".venv/bin/fab")
    for task in ("deploy", "provision", "rollback", "harden", "db.backup", "step.nginx"):
        assert "--dry, --dry-run" in subprocess.run([fab, "--help", task], cwd=project,
                                                    text=True, capture_output=True).stdout
    proc = subprocess.run([fab, "--dry", "-H", "web1", "deploy"], cwd=project, text=True,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "use --dry-run after the task" in proc.stderr
    assert "Traceback" not in proc.stderr
