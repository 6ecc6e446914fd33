"""Step 4: the nginx site in front of gunicorn, validated before it goes live."""

from tasks import tls as tls_step
from tasks.core import CHANGED, OK, DeployError, q, render, say
from tasks.files import differs, ensure_file

DEFAULT_SITE = "/etc/nginx/sites-enabled/default"


def render_site(s, tls=None):
    """The site; TLS=False renders it without https (while Let's Encrypt is still to ask)."""
    return render("nginx-site.j2", name=s.name, server_name=s.server_name, current=s.current,
                  port=s.port, tls=s.tls != "off" if tls is None else tls,
                  tls_cert=s.tls_cert_path, tls_key=s.tls_key_path, hsts_max_age=s.hsts_max_age,
                  acme_webroot=tls_step.ACME_WEBROOT if s.tls == "letsencrypt" else "")


def validate_script(staged, name):
    """Test the whole nginx tree as it would be, in a copy, before anything is live."""
    return f"""
tree=$(mktemp -d)
trap 'rm -rf "$tree" {q(staged)}' EXIT
cp -a /etc/nginx/. "$tree/"
rm -f "$tree/sites-enabled/{name}" "$tree/sites-enabled/default"
cp {q(staged)} "$tree/sites-enabled/{name}"
sed -i "s#/etc/nginx/#$tree/#g" "$tree/nginx.conf"
if ! out=$(nginx -t -c "$tree/nginx.conf" 2>&1); then
  printf '%s\\n' "$out" | sed "s#$tree/#/etc/nginx/#g" | grep -v 'test failed' | tail -n1 >&2
  exit 1
fi
"""


def install_site(h, content):
    """Validate CONTENT as the site in a copy of /etc/nginx, then make it live and reload."""
    s = h.settings
    staged = h.upload(content)
    webroot = f"install -d -m 0755 {tls_step.ACME_WEBROOT}\n" if s.tls == "letsencrypt" else ""
    try:
        h.change(validate_script(staged, s.name) + webroot
                 + f"install -m 0644 {q(staged)} {q(s.nginx_site)}.fab-new\n"
                 f"mv -f {q(s.nginx_site)}.fab-new {q(s.nginx_site)}\n"
                 f"ln -sfn {q(s.nginx_site)} {q(s.nginx_enabled)}.fab-new\n"
                 f"mv -Tf {q(s.nginx_enabled)}.fab-new {q(s.nginx_enabled)}\n"
                 f"rm -f {DEFAULT_SITE}\n"
                 "nginx -t -q\n"
                 "systemctl reload-or-restart nginx\n")
    except DeployError as e:
        raise DeployError(f"nginx rejected the new config, the old one stays live: {e}") from None


def converge(h):
    s, f = h.settings, h.facts
    changes = tls_step.ensure_certificate(h)
    if s.tls == "letsencrypt" and not tls_step.has_certificate(h):
        if not h.dry_run:  # certbot's challenge is answered by this site on port 80
            install_site(h, render_site(s, tls=False))
        tls_step.request_letsencrypt(h)
        changes.append("got a Let's Encrypt certificate")
    content = render_site(s)
    site_changed = differs(h, s.nginx_site, content)
    link_wrong = f.links.get(s.nginx_enabled) != s.nginx_site
    has_default = DEFAULT_SITE in f.links or DEFAULT_SITE in f.files
    enabled, active = f.services.get("nginx", ("", ""))
    if changes or site_changed or link_wrong or has_default:
        if h.dry_run:
            ensure_file(h, s.nginx_site, content)
        else:
            install_site(h, content)
        changes += [f"wrote {s.nginx_site}"] if site_changed else []
        changes += [f"enabled {s.name}"] if link_wrong else []
        changes += ["removed the default site"] if has_default else []
    if enabled != "enabled" or active != "active":
        h.change("systemctl enable --now nginx >/dev/null 2>&1")
        changes.append("enabled nginx")
    if changes and h.dry_run:
        say(h.name, "would reload nginx")
    return (CHANGED, ", ".join(changes)) if changes else (OK, "")
