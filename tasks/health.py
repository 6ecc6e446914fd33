"""The HTTP health probe, run on the server itself with its own python3.

Probing from the server reaches gunicorn on localhost and nginx on port 80 even
when the firewall or a bastion keeps the operator's machine out.
"""

import json

from tasks.core import PYTHON, q

PROBE = """\
import json, ssl, sys, time, urllib.request, urllib.error
url, want, wait, host = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3]), sys.argv[4]
request = urllib.request.Request(url, headers={"Host": host} if host else {})
deadline = time.monotonic() + wait
# The server probes itself by address, which its certificate does not name.
insecure = ssl._create_unverified_context()
while True:
    start = time.monotonic()
    try:
        r = urllib.request.urlopen(request, timeout=5, context=insecure)
        code, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read()
    except Exception as e:
        code, body = 0, str(getattr(e, "reason", e)).encode()
    ms = (time.monotonic() - start) * 1000
    ok = code == 200 and want in body
    if ok or time.monotonic() >= deadline:
        # The body is the app's: it crosses as one JSON line, whatever it holds.
        excerpt = body[:120].decode("utf-8", "replace")
        print(json.dumps([int(ok), code, round(ms, 1), excerpt]))
        sys.exit(0 if ok else 1)
    time.sleep(0.05)
"""


def app_url(port):
    """gunicorn on PORT, as the server reaches it."""
    return f"http://127.0.0.1:{port}"


def probe_command(s, base, wait):
    """A command printing `ok code ms excerpt` for BASE<health_path>, asking for the site's
    first server_name (nginx serves another app's site to other names).

    It retries for up to WAIT seconds until the answer is 200 with the expected text."""
    url = f"{base}{s.health_path}"
    return f"{PYTHON} -c {q(PROBE)} {q(url)} {q(s.health_text)} {q(wait)} {q(s.site_host)}"


def parse_probe(text):
    """(ok, status code, latency ms, body excerpt) from a probe's output (its last line)."""
    last = (text.strip().split("\n") or [""])[-1]
    try:
        ok, code, ms, excerpt = json.loads(last)
        return ok == 1, int(code), float(ms), str(excerpt).replace("\n", " ")
    except (ValueError, TypeError):
        return False, 0, 0.0, text.strip()[-120:]
