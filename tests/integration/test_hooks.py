"""Hooks and notifications around real deploys: a failing pre_deploy leaves the server as it
was (no release, no deploy log line); a deploy runs post_deploy with its release and posts
one JSON message to a listener on this machine's loopback."""

import json

from tests.conftest import fab, http_get, on
from tests.listener import listen


def test_a_failing_pre_deploy_changes_nothing_and_a_deploy_runs_its_hooks(module_server):
    s, apps = module_server
    fab("-H", s.name, "provision", check=True)
    releases = on(s, "ls /srv/hello-world/releases")
    log = on(s, "wc -l < /var/log/fab/hello-world.jsonl")
    app = apps / "app"
    app.mkdir()
    (app / "requirements.txt").write_text("flask==3.1.3\n")
    (app / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n\n\n"
                                "@app.route('/')\ndef hi():\n    return 'Hello hooks'\n")
    stopped = fab("-H", s.name, "deploy", env={
        "FABRIC_APP_SOURCE": str(app),
        "FABRIC_APP_HOOKS": json.dumps({"pre_deploy": "echo checking; exit 7"})})
    assert stopped.returncode == 1 and "the pre_deploy hook exited 7" in stopped.stderr
    assert on(s, "ls /srv/hello-world/releases") == releases
    assert on(s, "wc -l < /var/log/fab/hello-world.jsonl") == log  # not even a log line
    assert http_get(s)[2] == "Hello world"

    url, got, server = listen()
    done = apps / "post"
    proc = fab("-H", s.name, "deploy", env={
        "FABRIC_APP_SOURCE": str(app), "FABRIC_APP_NOTIFY": url,
        "FABRIC_APP_HOOKS": json.dumps({"post_deploy": f"echo $FAB_RELEASE > {done}"})})
    server.server_close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert http_get(s)[2] == "Hello hooks"
    live = on(s, "readlink /srv/hello-world/current").strip().rsplit("/", 1)[-1]
    assert done.read_text().strip() == live
    assert len(got) == 1 and got[0]["release"] == live and got[0]["result"] == "ok"
    assert got[0]["text"].startswith(f"hello-world deploy ok on {s.name}: {live}")
