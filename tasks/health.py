"""The HTTP health probe, run on the server itself with its own python3.

Probing from the server reaches gunicorn on its socket and nginx on port 80 even
when the firewall or a bastion keeps the operator's machine out.
"""

import json

from tasks.shell import PYTHON, q

PROBE = """\
import http.client, json, socket, ssl, sys, time, urllib.parse
target, path, want, wait, host = sys.argv[1:4] + [float(sys.argv[4]), sys.argv[5]]
want = want.encode()


class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(target[5:])


def get(path):
    if target.startswith("unix:"):
        conn = Unix("localhost", timeout=5)
    elif target.startswith("https://"):  # by address, which the certificate does not name
        conn = http.client.HTTPSConnection(target[8:], timeout=5,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(target[7:], timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        r = conn.getresponse()
        return r.status, r.getheader("Location"), r.read()
    finally:
        conn.close()


deadline = time.monotonic() + wait
while True:
    start = time.monotonic()
    try:
        at = path
        for _ in range(6):  # redirects within the site, followed as a browser would
            code, location, body = get(at)
            if code not in (301, 302, 303, 307, 308) or not location:
                break
            parts = urllib.parse.urlsplit(urllib.parse.urljoin(at, location))
            at = parts.path + ("?" + parts.query if parts.query else "")
    except Exception as e:
        code, body = 0, str(e).encode()
    ms = (time.monotonic() - start) * 1000
    ok = code == 200 and want in body
    if ok or time.monotonic() >= deadline:
        # The body is the app's: it crosses as one JSON line, whatever it holds.
        excerpt = body[:120].decode("utf-8", "replace")
        print(json.dumps([int(ok), code, round(ms, 1), excerpt]))
        sys.exit(0 if ok else 1)
    time.sleep(0.05)
"""


def app_socket(path):
    """gunicorn on the unix socket PATH, as a probe's target."""
    return f"unix:{path}"


def probe_command(s, base, wait):
    """A command printing `[ok, code, ms, excerpt]` (JSON) for <health_path> at BASE (a
    site's URL, or `app_socket`), asking for the site's first server_name (nginx serves
    another app's site to other names). Run as root: only root, nginx and the app reach
    the app's socket.

    It retries for up to WAIT seconds until the answer is 200 with the expected text."""
    return (f"{PYTHON} -c {q(PROBE)} {q(base)} {q(s.health_path)} {q(s.health_text)} "
            f"{q(wait)} {q(s.site_host)}")


def parse_probe(text):
    """(ok, status code, latency ms, body excerpt) from a probe's output (its last line)."""
    last = (text.strip().split("\n") or [""])[-1]
    try:
        ok, code, ms, excerpt = json.loads(last)
        return ok == 1, int(code), float(ms), str(excerpt).replace("\n", " ")
    except (ValueError, TypeError):
        return False, 0, 0.0, text.strip()[-120:]
