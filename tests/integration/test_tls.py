"""TLS on a real server: self-signed, then an uploaded certificate, then off again."""

import hashlib
import http.client
import json
import re
import socket
import ssl

import pytest

from tests.certs import make_certificate
from tests.conftest import booted, fab, on, recap

SELF_SIGNED = {"FABRIC_APP_TLS": "self-signed"}


@pytest.fixture(scope="module")
def server():
    with booted() as s:
        yield s


def https(server, cadata=None):
    """(status, headers, body, TLS version, DER certificate) of GET https://<server>/."""
    context = ssl.create_default_context(cadata=cadata)
    context.check_hostname = False  # reached by address; the certificate names the site
    if cadata is None:
        context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(server.address, 443, timeout=10, context=context)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        return (r.status, dict(r.getheaders()), r.read().decode(), conn.sock.version(),
                conn.sock.getpeercert(binary_form=True))
    finally:
        conn.close()


def http_answer(server, path="/"):
    conn = http.client.HTTPConnection(server.address, 80, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Location"), r.read().decode()
    finally:
        conn.close()


def der_sha256(pem):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def test_self_signed_https_with_redirect_hsts_and_modern_tls(server):
    proc = fab("-H", server.name, "provision", env=SELF_SIGNED, check=True)
    assert "made a self-signed certificate in /etc/hello-world/tls" in proc.stdout
    assert "allowed 22/tcp, 80/tcp, 443/tcp" in proc.stdout
    pem = on(server, "cat /etc/hello-world/tls/fullchain.pem")
    status, headers, body, version, der = https(server, cadata=pem)
    assert (status, body) == (200, "Hello world")
    assert version == "TLSv1.3"
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert hashlib.sha256(der).hexdigest() == der_sha256(pem)
    assert http_answer(server, "/static/style.css?v=1")[:2] == \
        (301, f"https://{server.address}/static/style.css?v=1")
    assert on(server, "stat -c '%U %G %a' /etc/hello-world/tls/privkey.pem").strip() == \
        "root root 600"
    assert re.search(r"^443/tcp +ALLOW +Anywhere", on(server, "ufw status"), re.M)
    again = fab("-H", server.name, "provision", env=SELF_SIGNED, check=True)
    assert recap(again, server.name) == "ok=5 changed=0 failed=0"
    data = json.loads(fab("-H", server.name, "status", "--json", env=SELF_SIGNED,
                          check=True).stdout)[0]
    assert data["healthy"] and data["tls_days_left"] >= 3600 and data["http_status"] == 200


def test_an_uploaded_certificate_is_served_and_its_key_never_shown(server, tmp_path):
    cert, key = make_certificate(tmp_path, "shop.example.test")
    settings = tmp_path / "tls.yaml"
    settings.write_text(f"app:\n  tls: custom\n  tls_cert: {cert}\n  tls_key: {key}\n"
                        "  hsts_max_age: 0\n")
    secret_line = key.read_text().splitlines()[1]
    dry = fab("-f", str(settings), "-H", server.name, "provision", "--dry-run", check=True)
    assert "/etc/hello-world/tls/privkey.pem" in dry.stdout and "(secret, sha256" in dry.stdout
    assert secret_line not in dry.stdout
    proc = fab("-f", str(settings), "-H", server.name, "provision", check=True)
    assert "installed the certificate in /etc/hello-world/tls" in proc.stdout
    assert secret_line not in proc.stdout + proc.stderr
    status, headers, body, _, der = https(server, cadata=cert.read_text())
    assert (status, body) == (200, "Hello world")
    assert hashlib.sha256(der).hexdigest() == der_sha256(cert.read_text())
    assert "Strict-Transport-Security" not in headers
    assert on(server, "stat -c '%U %G %a' /etc/hello-world/tls/privkey.pem; "
                      "sha256sum < /etc/hello-world/tls/privkey.pem").split() == \
        ["root", "root", "600", hashlib.sha256(key.read_bytes()).hexdigest(), "-"]
    assert fab("-f", str(settings), "-H", server.name, "status").returncode == 0


def test_status_flags_a_certificate_about_to_expire(server, tmp_path):
    cert, key = make_certificate(tmp_path, "soon.example.test", days=5)
    settings = tmp_path / "tls.yaml"
    settings.write_text(f"app:\n  tls: custom\n  tls_cert: {cert}\n  tls_key: {key}\n")
    fab("-f", str(settings), "-H", server.name, "provision", check=True)
    proc = fab("-f", str(settings), "-H", server.name, "status")
    assert proc.returncode == 1
    assert re.search(rf"^{server.name}: the certificate expires in [45] days \(", proc.stdout,
                     re.M), proc.stdout


def test_a_key_that_does_not_match_is_refused_before_connecting(server, tmp_path):
    cert, _ = make_certificate(tmp_path, "a.test")
    _, other_key = make_certificate(tmp_path, "b.test")
    settings = tmp_path / "tls.yaml"
    settings.write_text(f"app:\n  tls: custom\n  tls_cert: {cert}\n  tls_key: {other_key}\n")
    before = on(server, "sha256sum /etc/hello-world/tls/*")
    proc = fab("-f", str(settings), "-H", server.name, "provision")
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert f"does not belong to the certificate in '{cert}'" in proc.stderr
    assert on(server, "sha256sum /etc/hello-world/tls/*") == before


def test_tls_off_again_serves_http_and_closes_443(server):
    proc = fab("-H", server.name, "provision", check=True)
    assert "closed 443/tcp" in proc.stdout
    assert http_answer(server) == (200, None, "Hello world")
    with pytest.raises(OSError):
        socket.create_connection((server.address, 443), timeout=3).close()
    assert "443" not in on(server, "ufw status")


def test_letsencrypt_goes_as_far_as_the_sandbox_allows(server):
    """No public domain here and no way to Let's Encrypt: a dry run shows the plan, changes
    nothing."""
    env = {"FABRIC_APP_TLS": "letsencrypt", "FABRIC_APP_SERVER_NAME": "shop.example.org",
           "FABRIC_APP_LETSENCRYPT_EMAIL": "ops@example.org"}
    before = on(server, "sha256sum /etc/nginx/sites-available/hello-world")
    proc = fab("-H", server.name, "provision", "--dry-run", env=env, check=True)
    assert "installed certbot" in proc.stdout
    assert "would request a Let's Encrypt certificate for shop.example.org" in proc.stdout
    assert "+    ssl_certificate /etc/letsencrypt/live/hello-world/fullchain.pem;" in proc.stdout
    assert on(server, "sha256sum /etc/nginx/sites-available/hello-world") == before
    assert on(server, "command -v certbot || echo none").strip() == "none"
