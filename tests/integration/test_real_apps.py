"""Apps shaped like real ones: a package with an app factory, static files inside it, no
gunicorn in its requirements, a driver named in a setting; a first release proven before
it goes live; a second app beside the first on the same server."""

import http.client
import json
import shutil

import pytest

from tests.conftest import PROJECT, fab, on, recap

# make test keeps a package app with a factory through the tutorial app (test_tutorial_app.py)
pytestmark = pytest.mark.slow

SHOP = {
    "shop/__init__.py": '''\
import six
from flask import Flask


def create_app():
    app = Flask(__name__)

    @app.route("/")
    def index():
        return "Hello from the shop"
    return app
''',
    "shop/static/shop.css": "body { color: teal }\n",
    "requirements.txt": "flask==3.1.3\n",  # no gunicorn: the tool brings it
}
SHOP_ENV = {"FABRIC_APP_MODULE": "shop:create_app()", "FABRIC_APP_PACKAGES": "six==1.17.0",
            "FABRIC_APP_STATIC_DIR": "shop/static", "FABRIC_APP_STATIC_URL": "/assets/"}
OTHER_ENV = {"FABRIC_APP_NAME": "other", "FABRIC_APP_SERVER_NAME": "other.test",
             "FABRIC_APP_DEFAULT_SERVER": "0", "FABRIC_APP_SOURCE": str(PROJECT / "hello_world")}


def write_app(root, files):
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def get(server, path="/", host=None):
    """(status, body) of GET PATH from this machine, with a Host header if given."""
    conn = http.client.HTTPConnection(server.address, 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def shop_server(module_server):
    return module_server


def test_a_first_release_that_cannot_start_never_goes_live(shop_server):
    s, apps = shop_server
    broken = write_app(apps / "broken", {**SHOP, "shop/__init__.py": "import no_such_module\n"})
    proc = fab("-H", s.name, "deploy", env={**SHOP_ENV, "FABRIC_APP_SOURCE": str(broken)})
    assert proc.returncode == 1
    assert "] app         failed   the new release is unhealthy" in proc.stdout
    assert "ModuleNotFoundError: No module named 'no_such_module'" in proc.stdout
    assert on(s, "ls -A /srv/hello-world/releases").strip() == ""  # removed, never linked
    assert on(s, "test -e /srv/hello-world/current && echo yes || echo no").strip() == "no"
    status = fab("-H", s.name, "status", "--json", env=SHOP_ENV)
    assert status.returncode == 1 and "no release deployed" in json.loads(status.stdout)[0][
        "problems"]


SHOP_SETTINGS = """\
app:
  source: .
  module: "shop:create_app()"
  packages: "six==1.17.0"
  static_dir: shop/static
  static_url: /assets/
"""


def test_a_package_app_without_gunicorn_serves_with_its_static_files_and_extras(shop_server):
    s, apps = shop_server
    # the settings live in the app's folder; `source: .` is that folder, whatever the cwd
    shop = write_app(apps / "shop", {**SHOP, "deploy.yaml": SHOP_SETTINGS})
    proc = fab("-f", str(shop / "deploy.yaml"), "-H", s.name, "deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert get(s) == (200, "Hello from the shop")
    assert get(s, "/assets/shop.css") == (200, SHOP["shop/static/shop.css"])
    venv = "/srv/hello-world/current/.venv/bin/python"
    assert on(s, f"{venv} -c 'import gunicorn, six; print(gunicorn.__version__, six.__version__)'")\
        .split() == ["23.0.0", "1.17.0"]


def test_a_second_app_serves_beside_the_first_and_each_converges(shop_server):
    s, apps = shop_server
    proc = fab("-H", s.name, "provision", env=OTHER_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert get(s, host="other.test") == (200, "Hello world")
    assert get(s) == (200, "Hello from the shop")  # still the default site
    assert get(s, "/assets/shop.css")[0] == 200 and get(s, "/static/style.css", "other.test")[0] \
        == 200
    shop = str(apps / "shop" / "deploy.yaml")
    assert recap(fab("-f", shop, "-H", s.name, "deploy"), s.name) == "ok=6 changed=0 failed=0"
    assert recap(fab("-H", s.name, "deploy", env=OTHER_ENV), s.name) == "ok=6 changed=0 failed=0"
    assert json.loads(fab("-H", s.name, "status", "--json", env=OTHER_ENV, check=True).stdout)[0][
        "http_status"] == 200
    assert on(s, "ls /etc/supervisor/conf.d").split() == ["hello-world.conf", "other.conf"]
    users = on(s, "ps -eo user:20,args | awk '/bin[/]gunicorn/ {print $1}' | sort -u").split()
    assert users == ["hello-world", "other"]
    shutil.rmtree(apps / "broken", ignore_errors=True)
