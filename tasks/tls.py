"""The certificate nginx serves: generated (self-signed), uploaded (custom) or from Let's Encrypt.

A self-signed key is made on the server and never leaves it; an uploaded key is
written root-only (0600) before the site that uses it goes live; Let's Encrypt
certificates come from certbot's webroot plugin, which needs the site to serve
`/.well-known/acme-challenge/` on port 80 first, and renew with certbot's timer.
"""

from pathlib import Path

from tasks.plan import Command, fingerprint, upload
from tasks.shell import q

ACME_WEBROOT = "/var/www/letsencrypt"


def has_certificate(s, facts):
    return s.tls_cert_path in facts.files and s.tls_key_path in facts.files


def self_signed_script(s):
    """Make a key and a 10-year certificate for the site's names, key 0600 from birth."""
    names = [n for n in s.server_name.split() if n != "_"]
    cn = names[0].lstrip("*.") if names else "$(hostname)"
    alt = ",".join(f"DNS:{n}" for n in names) or "DNS:$(hostname)"
    d, cert, key = q(s.tls_dir), q(s.tls_cert_path), q(s.tls_key_path)
    return f"""umask 077
install -d -m 0755 {d}
trap 'rm -f {key}.fab-new {cert}.fab-new' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \\
  -subj "/CN={cn}" -addext "subjectAltName={alt}" \\
  -keyout {key}.fab-new -out {cert}.fab-new 2>/dev/null
chmod 0644 {cert}.fab-new
mv -f {key}.fab-new {key}
mv -f {cert}.fab-new {cert}
"""


def certificate(s, facts):
    """The changes that put the certificate and key in place (all but Let's Encrypt's)."""
    if s.tls == "self-signed" and not has_certificate(s, facts):
        return [Command(f"made a self-signed certificate in {s.tls_dir}", self_signed_script(s))]
    if s.tls == "custom":
        said = f"installed the certificate in {s.tls_dir}"
        cert = Path(s.tls_cert).expanduser().read_text()
        key = Path(s.tls_key).expanduser().read_text()
        return (upload(facts, said, s.tls_cert_path, cert)
                + upload(facts, said, s.tls_key_path, key, mode="0600", shown=fingerprint))
    return []


def letsencrypt_script(s):
    """Ask Let's Encrypt for the site's certificate (nginx must already serve the webroot)."""
    domains = " ".join(f"-d {q(n)}" for n in s.server_name.split())
    return (f"certbot certonly --webroot -w {ACME_WEBROOT} --cert-name {q(s.name)} {domains} "
            f"--non-interactive --agree-tos -m {q(s.letsencrypt_email)} --keep-until-expiring "
            "--deploy-hook 'systemctl reload nginx' -q")
