"""The seed stack as an idiomatic pyinfra deploy, for bench/run.py to time beside `fab provision`.

    pyinfra -y inventory.py deploy.py   (APP_SRC=<local app folder>, WORKERS=<n>)
"""

import os
from pathlib import Path

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, pip, server, systemd
from pyinfra.operations.util import any_changed

APP_USER, APP_DIR = "tom", "/home/tom/hello-world"
APP_SRC = os.environ["APP_SRC"]
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
context = {"app_user": APP_USER, "app_dir": APP_DIR, "workers": int(os.environ.get("WORKERS", 4))}

apt.packages(name="System packages", packages=["python3-venv", "nginx", "supervisor", "ufw"],
             update=True, cache_time=86400, _sudo=True)

files.directory(name="App directory", path=APP_DIR, user=APP_USER, group=APP_USER, _sudo=True)
files.directory(name="Log directory", path="/var/log/hello-world", user="root", group=APP_USER,
                _sudo=True)
code = files.sync(name="App code", src=APP_SRC, dest=APP_DIR, user=APP_USER, group=APP_USER,
                  _sudo=True)
venv = pip.venv(name="Virtualenv", path=f"{APP_DIR}/venv", python="python3", _sudo=True,
               _sudo_user=APP_USER)
pip.packages(name="App requirements", requirements=f"{APP_DIR}/requirements.txt",
             virtualenv=f"{APP_DIR}/venv", _sudo=True, _sudo_user=APP_USER,
             _if=any_changed(code, venv))

program = files.template(name="Supervisor program", src=str(TEMPLATES / "supervisor.conf.j2"),
                         dest="/etc/supervisor/conf.d/hello-world.conf", _sudo=True, **context)
server.shell(name="Update supervisor", commands=["supervisorctl reread", "supervisorctl update"],
             _sudo=True, _if=program.did_change)
server.shell(name="Restart app", commands=["supervisorctl restart hello-world"], _sudo=True,
             _if=code.did_change)

site = files.template(name="Nginx site", src=str(TEMPLATES / "nginx-site.j2"),
                      dest="/etc/nginx/sites-available/hello-world", _sudo=True, **context)
link = files.link(name="Nginx site enabled", path="/etc/nginx/sites-enabled/hello-world",
                  target="/etc/nginx/sites-available/hello-world", _sudo=True)
default = files.link(name="Nginx default site removed", path="/etc/nginx/sites-enabled/default",
                     present=False, _sudo=True)
systemd.service(name="Reload nginx", service="nginx", reloaded=True, _sudo=True,
                _if=any_changed(site, link, default))

# pyinfra has no ufw operation: ask ufw (a fact), change only what differs.
ufw = host.get_fact(Command, "ufw status || true", _sudo=True) or ""
if "Status: active" not in ufw or "80/tcp" not in ufw:
    server.shell(name="Firewall", commands=["ufw allow 22/tcp", "ufw allow 80/tcp",
                                            "ufw --force enable"], _sudo=True)
