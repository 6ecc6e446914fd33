"""Asset bridging on a real server: after a deploy, a static file only the release before
had is still served (a page that release rendered gets its assets); one release later, it
is gone."""

import shutil
import urllib.error

from tests.conftest import PROJECT, fab, http_get


def status_of(s, path):
    try:
        return http_get(s, path)[0]
    except urllib.error.HTTPError as e:
        return e.code


def test_the_previous_releases_static_files_are_still_served(module_server):
    s, apps = module_server
    app = apps / "app"
    shutil.copytree(PROJECT / "hello_world", app)
    env = {"FABRIC_APP_SOURCE": str(app)}
    static = app / "static"
    (static / "v1.css").write_text("a { color: red }\n")
    fab("-H", s.name, "provision", env=env, check=True)
    (static / "v1.css").unlink()
    (static / "v2.css").write_text("a { color: blue }\n")
    fab("-H", s.name, "deploy", env=env, check=True)
    assert status_of(s, "/static/v1.css") == 200  # from the release before
    assert http_get(s, "/static/v1.css")[2] == "a { color: red }\n"
    assert status_of(s, "/static/v2.css") == 200
    assert status_of(s, "/static/none.css") == 404
    (static / "v2.css").unlink()
    (static / "v3.css").write_text("a { color: green }\n")
    fab("-H", s.name, "deploy", env=env, check=True)
    assert [status_of(s, f"/static/{n}.css") for n in ("v1", "v2", "v3")] == [404, 200, 200]
