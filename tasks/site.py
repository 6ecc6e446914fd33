"""The app's nginx site: rendered from its template, and installed only once the whole nginx
tree as it would be has passed `nginx -t` in a copy."""

import html
from contextlib import contextmanager, nullcontext

from tasks import tls as tls_step
from tasks.names import bare
from tasks.run import reach
from tasks.shell import DeployError, q
from tasks.templates import render

DEFAULT_SITE = "/etc/nginx/sites-enabled/default"
RETRY_AFTER = 120  # seconds a client is told to wait during maintenance


def render_site(s, tls=None, down=()):
    """The site; TLS=False renders it without https (while Let's Encrypt is still to ask).
    A balancer's proxies to its web hosts (those in DOWN marked down: drained)."""
    return render("nginx-site.j2", name=s.name, server_name=s.server_name, current=s.current,
                  previous=s.previous,
                  upstream=[(addr, addr in down) for addr in s.upstream],
                  balancers=s.balancers,
                  static_dir=s.static_dir, static_url=s.static_url,
                  default=" default_server" if s.default_server else "",
                  socket=s.socket, candidate_socket=s.candidate_socket,
                  tls=s.tls != "off" if tls is None else tls,
                  tls_cert=s.tls_cert_path, tls_key=s.tls_key_path, hsts_max_age=s.hsts_max_age,
                  acme_webroot=tls_step.ACME_WEBROOT if s.tls == "letsencrypt" else "",
                  maintenance_dir=s.maintenance_dir, maintenance_switch=s.maintenance_switch,
                  health_path=s.health_path,
                  retry_after=RETRY_AFTER)


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


def install_script(s, staged):
    """Validate the STAGED site in a copy of /etc/nginx, then make it live and reload."""
    webroot = f"install -d -m 0755 {tls_step.ACME_WEBROOT}\n" if s.tls == "letsencrypt" else ""
    return (validate_script(staged, s.name) + webroot
            + f"install -m 0644 {q(staged)} {q(s.nginx_site)}.fab-new\n"
            f"mv -f {q(s.nginx_site)}.fab-new {q(s.nginx_site)}\n"
            f"ln -sfn {q(s.nginx_site)} {q(s.nginx_enabled)}.fab-new\n"
            f"mv -Tf {q(s.nginx_enabled)}.fab-new {q(s.nginx_enabled)}\n"
            f"rm -f {DEFAULT_SITE}\n"
            "nginx -t -q\n"
            "systemctl reload-or-restart nginx\n")


def install_site(h, content):
    """Make CONTENT the site the validated way; the old config stays live if nginx refuses."""
    try:
        h.change(install_script(h.settings, h.upload(content)))
    except DeployError as e:
        raise DeployError(f"nginx rejected the new config, the old one stays live: {e}") from None


PAGE_LIMIT = 1024 * 1024  # bytes of the app's own page


def plain_page(message):
    text = html.escape(message or "This site is down for maintenance. Please try again soon.")
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Maintenance</title>"
            f"</head>\n<body><h1>Maintenance</h1><p>{text}</p></body></html>\n")


def maintenance_on_script(s, message=""):
    """Turn maintenance on: write the page (the app's own if its live release has one, read
    as the app's account: a link it planted reaches nothing that account cannot read), put it
    in place, then turn the switch on that the site's template looks for."""
    own = [f"{s.current}/maintenance.html", f"{s.current}/{s.static_dir}/maintenance.html"]
    read = " || ".join(f"runuser -u {q(s.user)} -- head -c {PAGE_LIMIT} -- {q(path)} "
                       f'> "$page" 2>/dev/null' for path in own)
    return "\n".join([
        f"install -d -m 0755 {q(s.maintenance_dir)}",
        f"page=$(mktemp {q(s.maintenance_dir)}/.new.XXXXXX)",
        f"{{ {read}; }} || printf '%s' {q(plain_page(message))} > \"$page\"",
        'chmod 0644 "$page"',
        f'mv -f "$page" {q(s.maintenance_page)}',
        f": > {q(s.maintenance_switch)}",
    ])


def maintenance_off_script(s):
    """Turn maintenance off: the switch alone goes, so a request that found it on still
    finds its page."""
    return f"rm -f {q(s.maintenance_switch)}"


@contextmanager
def maintained(h, message, hosts):
    """The maintenance page on HOSTS (H itself among them, by its name) for the block, each
    left as it was after it: a maintenance the operator turned on stays on. Yields the
    hosts it turned on."""
    s, turned = h.settings, []
    switch = q(s.maintenance_switch)

    def on(host):
        return nullcontext(h) if bare(host) == bare(h.c.original_host) else reach(h, host)
    try:
        for host in hosts:
            with on(host) as w:
                if "was-on" not in w.change(f"if [ -f {switch} ]; then echo was-on; else\n"
                                            f"{maintenance_on_script(s, message)}\nfi"):
                    turned.append(host)
        yield turned
    finally:
        for host in turned:
            with on(host) as w:
                w.change(maintenance_off_script(s))
