"""Step 5: the nginx site in front of gunicorn, validated before it goes live."""

from tasks import tls as tls_step
from tasks.declared import Needs
from tasks.output import say
from tasks.plan import Call, Command, Plan, Step, Upload, differs
from tasks.site import DEFAULT_SITE, install_site, render_site

TLS_PACKAGES = {"self-signed": ("openssl",), "custom": ("openssl",),
                "letsencrypt": ("openssl", "certbot")}


def needs(s):
    """nginx on a web host and a balancer: HTTP open (to the balancers only, behind them),
    HTTPS with TLS on."""
    tls = [s.tls_cert_path, s.tls_key_path] if s.tls != "off" else []
    files, links = (s.nginx_site, *tls), (s.nginx_enabled, DEFAULT_SITE)
    if not (s.serves_app or s.balancing):
        return Needs(files=files, links=links)
    return Needs(packages=("nginx", *TLS_PACKAGES.get(s.tls, ())), services=("nginx",),
                 files=files, links=links,
                 ports=(("80/tcp", s.balancers or None),
                        *((("443/tcp", None),) if s.tls != "off" else ())))


def logs(s):
    return {"access": [f"/var/log/nginx/{s.name}.access.log"],
            "error": [f"/var/log/nginx/{s.name}.error.log"]}


class Site(Upload):
    """The site file, installed by `install_site` (validated, linked, nginx reloaded)."""

    def __init__(self, said, path, content):
        super().__init__(said, path, content, install=lambda h, site: install_site(h, site.content))

    def preview(self, h):
        super().preview(h)
        say(h.name, "would reload nginx")


def plan(s, facts):
    """The certificate, the site (validated, linked, the default site removed), nginx on."""
    changes = tls_step.certificate(s, facts)
    if s.tls == "letsencrypt" and not tls_step.has_certificate(s, facts):
        # certbot's challenge is answered by this site, on port 80, before TLS is on.
        changes += [Call("", lambda h: install_site(h, render_site(s, tls=False))),
                    Command("got a Let's Encrypt certificate", tls_step.letsencrypt_script(s),
                            timeout=300,
                            would=f"request a Let's Encrypt certificate for {s.server_name}")]
    content = render_site(s)
    site_changed = differs(facts, s.nginx_site, content)
    link_wrong = facts.links.get(s.nginx_enabled) != s.nginx_site
    has_default = DEFAULT_SITE in facts.links or DEFAULT_SITE in facts.files
    if changes or site_changed or link_wrong or has_default:
        said = ([f"wrote {s.nginx_site}" + (f" (balancing {len(s.upstream)} web hosts)"
                                            if s.balancing else "")]
                if site_changed else []) + \
            ([f"enabled {s.name}"] if link_wrong else []) + \
            (["removed the default site"] if has_default else [])
        changes.append(Site(", ".join(said), s.nginx_site, content))
    if facts.service("nginx") != ("enabled", "active"):
        changes.append(Command("enabled nginx", "systemctl enable --now nginx >/dev/null 2>&1"))
    return Plan(changes, ok="site unchanged, enabled, nginx active")


STEP = Step("nginx", lambda h: plan(h.settings, h.facts),
            "Configure the nginx site (validated with nginx -t before it goes live).",
            lambda h: h.settings.serves_app or h.settings.balancing)
