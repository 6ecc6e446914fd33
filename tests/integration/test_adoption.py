"""A Flask developer's way in: the tool installed from its wheel into a fresh venv outside
this checkout, `fab init` in a tutorial-shaped app's own folder, provision and deploy from
there with nothing edited but a secret, pages through nginx; `fab destroy` takes it off
and a new provision brings it back on its data. Bad settings stop the installed tool in
one line, before any connection."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from sandbox.servers import STATE
from tests.conftest import PROJECT, http_get, on
from tests.tutorial import tutorial_app

SHIPPED = ("pyproject.toml", "README.md", "requirements.txt", "tasks", "templates")


@pytest.fixture(scope="module")
def tool(tmp_path_factory):
    """The `fab` of a wheel built from this checkout, pip-installed into a fresh venv with
    the pinned dependencies from the local wheelhouse (no index)."""
    root = tmp_path_factory.mktemp("tool")
    (root / "src").mkdir()
    for name in SHIPPED:  # what the wheel is built from, and nothing else
        if (PROJECT / name).is_dir():
            shutil.copytree(PROJECT / name, root / "src" / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(PROJECT / name, root / "src" / name)
    subprocess.run([str(PROJECT / ".venv/bin/pip"), "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(root / "dist"), str(root / "src")],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    wheel = next((root / "dist").glob("flask_fab-*.whl"))
    subprocess.run([str(root / "venv/bin/pip"), "install", "-q", "--no-index", "--find-links",
                    str(PROJECT / ".venv/wheels"), str(wheel)], check=True, timeout=300)
    return root / "venv/bin/fab"


def run(tool, cwd, *args, env=None, timeout=600):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "INVOKE_"))}
    return subprocess.run([str(tool), "-S", str(STATE / "ssh_config"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**clean, **(env or {})}, stdin=subprocess.DEVNULL)


def page_when(s, path, text, seconds=30):
    """The page at PATH once it says TEXT (bounded: the worker works every half second)."""
    deadline, page = time.monotonic() + seconds, ""
    while time.monotonic() < deadline and page != text:
        page = http_get(s, path)[2]
        time.sleep(0.5)
    return page


def test_installed_fab_inits_and_deploys_a_tutorial_app_from_its_own_folder(tool, module_server):
    s, apps = module_server
    app = tutorial_app(apps / "microblog")
    assert not str(tool).startswith(str(PROJECT)) and not str(app).startswith(str(PROJECT))
    proc = run(tool, app, "init")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "module: \"microblog:app\"" in (app / "deploy.yaml").read_text()
    assert run(tool, app, "init").returncode == 1  # never overwrites

    proc = run(tool, app, "-H", s.name, "provision")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ran `flask db upgrade`" in proc.stdout
    assert http_get(s, "/add/hello")[2] == "added"
    assert page_when(s, "/", "v1 plain banner posts=1 done=1") == \
        "v1 plain banner posts=1 done=1"  # the Procfile's worker did its work
    assert http_get(s, "/static/style.css")[0] == 200
    venv = "/srv/microblog/current/.venv/bin/python"
    assert on(s, f"{venv} -c 'import flask_migrate, dotenv, gunicorn; print(1)'").strip() == "1"
    assert "SECRET_KEY" not in on(s, "cat /srv/microblog/current/.flaskenv")
    assert on(s, "test -e /srv/microblog/current/.env && echo shipped || echo kept",
              check=False).strip() == "kept"

    routes = app / "app/routes.py"
    routes.write_text(routes.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    proc = run(tool, app, "-H", s.name, "deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert http_get(s)[2] == "v2 plain banner posts=1 done=1"
    proc = run(tool, app / "app", "-H", s.name, "status")  # deploy.yaml found above
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_destroy_takes_the_app_off_and_a_new_provision_brings_it_back_on_its_data(
        tool, module_server):
    s, apps = module_server
    app = apps / "microblog"
    refused = run(tool, app, "-H", s.name, "destroy")
    assert refused.returncode == 2 and "run it with --yes" in refused.stderr
    assert http_get(s)[0] == 200  # nothing changed
    proc = run(tool, app, "-H", s.name, "destroy", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kept /srv/microblog/shared, /srv/microblog/backups" in proc.stdout
    with pytest.raises(OSError):
        http_get(s, timeout=5)  # no site left: port 80 closed as well
    left = on(s, "ls /srv/microblog; ls /etc/supervisor/conf.d /etc/nginx/sites-enabled; "
                 "id -u fab-build-microblog 2>&1; pgrep -u microblog -c || true")
    assert left.split()[:1] == ["shared"] and "microblog.conf" not in left
    assert "no such user" in left and left.strip().endswith("0")
    assert on(s, "stat -c %U /srv/microblog/shared/app.db").strip() == "microblog"

    proc = run(tool, app, "-H", s.name, "provision")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert page_when(s, "/", "v2 plain banner posts=1 done=1") == \
        "v2 plain banner posts=1 done=1"  # the post written before destroy is back


@pytest.mark.parametrize("files, args, env, said", [
    ({}, [], {}, "no deploy.yaml in {app} or a folder above it: run `fab init` in your "
                 "app's folder"),
    ({}, ["-f", "missing.yaml"], {}, "-f missing.yaml: no such file"),
    ({"deploy.yaml": "source: .\nworkers: 3\n"}, [], {},
     "deploy.yaml: source, workers at the top level: put the settings under `app:`"),
    ({"deploy.yaml": "app:\n  source: .\n  modul: x\n"}, [], {},
     "deploy.yaml:3: app.modul: no such setting; did you mean module?"),
    ({"deploy.yaml": "app:\n  source: [.\n"}, [], {}, "deploy.yaml:3: not valid YAML"),
    ({"deploy.yaml": "app: 3\n"}, [], {}, "deploy.yaml: app: must hold the settings"),
    ({"deploy.yaml": "app:\n  name: shop\n"}, [], {},
     "deploy.yaml: app.source is not set: add `source: .`"),
    ({"deploy.yaml": "app:\n  source: .\n"}, [], {"FABRIC_APP_MODUL": "x"},
     "FABRIC_APP_MODUL: no such setting; did you mean FABRIC_APP_MODULE?"),
    ({"deploy.yaml": "app:\n  source: .\n  shared_paths: [logs/, app.db]\n  redis: no\n"},
     [], {"FABRIC_APP_WORKERS": "abc"}, "FABRIC_APP_WORKERS: app.workers='abc'"),
])
def test_a_bad_setting_stops_the_installed_tool_in_one_line_before_any_connection(
        tool, tmp_path, files, args, env, said):
    app = tmp_path / "shop"
    app.mkdir()
    (app / "requirements.txt").write_text("flask\n")
    for name, text in files.items():
        (app / name).write_text(text)
    proc = run(tool, app, "-H", "nobody@192.0.2.1", *args, "deploy", env=env, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and said.format(app=app) in lines[0], proc.stderr
    assert proc.stdout == ""  # no host line: nothing was sent
