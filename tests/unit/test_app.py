"""The app step: accounts, the tree, and a new release as named changes (tasks.release,
tasks.source)."""

import dataclasses
from types import SimpleNamespace

import pytest
from invoke import Config

from tasks import installer, release, revision, switch
from tasks.config import load
from tasks.shell import DeployError
from tasks.steps import app, needs
from tasks.steps.app import ancestors
from tests.unit.stack import CONVERGED, S, converged_facts, facts_for, parse, said


def test_layout_opens_only_traversal_of_the_tree_and_fixes_what_differs():
    f = parse(CONVERGED)
    lines = app.layout_script(S, f)
    assert "chmod o+x /srv" in lines
    assert not any("useradd" in line for line in lines)
    assert "install -d -o root -g hello-world -m 750 /var/log/hello-world" in lines
    assert "install -d -o root -g root -m 755 /srv/hello-world" not in lines
    assert ancestors("/home/tom/shop") == ["/home", "/home/tom"]


def test_a_release_builds_a_venv_only_when_its_requirements_are_new():
    unpack = release.unpack_tarball("/tmp/x.tgz")
    lines = release.release_script(S, unpack, "20260101T000000Z-abcdabcd", "h", "v" * 16, False)
    assert lines[-4:] == ["ln -sfn ../../venvs/vvvvvvvvvvvvvvvv "
                          "/srv/hello-world/releases/20260101T000000Z-abcdabcd/.venv",
                          "(umask 027; printf '%s\\n' h > \"$release/.fab-release.new\")",
                          'chgrp hello-world "$release/.fab-release.new"',
                          'mv "$release/.fab-release.new" "$release/.fab-release"']  # marker last
    assert not any("pip install" in line for line in lines)
    with_venv = release.release_script(S, unpack, "r", "h", "v" * 16, True)
    assert any("pip install" in line for line in with_venv)


def test_a_git_source_is_fetched_into_a_root_mirror_and_exported_by_commit():
    g = load(Config(overrides={"app": {"source": "https://git.example.org/shop.git",
                                           "ref": "v1.2"}}))
    assert g.source_is_git and not S.source_is_git and "git" in needs(g).packages
    script = revision.git_resolve_script(g)
    assert "git clone --quiet --mirror -- https://git.example.org/shop.git " \
           "/srv/hello-world/repo.git.fab-new" in script
    assert "rev-parse --verify --quiet 'v1.2^{commit}'" in script
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert release.unpack_commit(g, sha) == [
        f"git -C /srv/hello-world/repo.git archive --format=tar {sha} "
        '| tar -x -C "$release" --no-same-owner']
    assert app.release_id(sha).endswith("-01234567")


def test_app_plans_a_release_only_for_new_code_and_a_venv_only_for_new_requirements():
    f = converged_facts()
    code_only = app.plan(S, f, revision.Source("c0ffee", "0123456789abcdef", "upload 3 files"),
                         rid="20270101T000000Z-c0ffee00")
    assert said(code_only) == ["released 20270101T000000Z-c0ffee00"]
    # the release as named changes, each shown in a dry run
    assert [change.would for change in code_only.changes] == [
        "upload 3 files as release 20270101T000000Z-c0ffee00",
        "build release 20270101T000000Z-c0ffee00 as fab-build-hello-world, then seal it root's",
        "switch to release 20270101T000000Z-c0ffee00, checked by a candidate",
        "keep the newest 5 releases"]
    new_reqs = app.plan(S, f, revision.Source("c0ffee", "fedcba9876543210"), rid="r")
    assert said(new_reqs) == ["released r with new virtualenv fedcba9876543210"]
    assert new_reqs.changes[1].would == ("build release r and virtualenv fedcba9876543210 as "
                                         "fab-build-hello-world, then seal it root's")
    migrating = dataclasses.replace(S, release_command="flask db upgrade")
    phase = app.plan(migrating, f, revision.Source("c0ffee", "0123456789abcdef"), rid="r")
    assert phase.changes[2].would.startswith("run `flask db upgrade` in it before traffic")


def test_app_restarts_the_live_app_covered_when_only_its_environment_changed(tmp_path):
    env = tmp_path / "prod.env"
    env.write_text("API_KEY=s3cret\n")
    s = load(Config(overrides={"app": {"env_file": str(env)}}))
    plan = app.plan(s, converged_facts(s), revision.Source("feedface", "0123456789abcdef"))
    upload, restart = plan.changes
    assert (upload.path, upload.owner, upload.group, upload.mode) == \
        ("/etc/hello-world/env", "root", "hello-world", "0640")
    assert upload.shown(upload.content) == "API_KEY=****\n"
    assert upload.said == "updated the app's environment" and restart.run is switch.restart


def test_a_fresh_server_gets_system_accounts_and_a_first_release_of_a_git_source():
    g = load(Config(overrides={"app": {"name": "shop",
                                       "source": "https://git.example.org/shop.git"}}))
    plan = app.plan(g, facts_for(S), revision.Source(None, None))
    assert said(plan)[0] == "created the app's account shop"
    script = plan.changes[0].script
    for account, comment in (("shop", "'fab app shop'"),
                             ("fab-build-shop", "'fab builds shop'")):
        assert ("useradd --system --user-group --shell /usr/sbin/nologin --home-dir /nonexistent "
                f"--no-create-home --comment {comment} {account}") in script
    assert "grep -qsxF fab-build-shop /etc/cron.deny || echo fab-build-shop >> /etc/cron.deny" \
        in script
    assert "install -d -o root -g root -m 755 /srv/shop" in script
    assert said(plan)[-1].startswith("released <time>-<commit>")


def test_a_tree_the_app_user_can_write_or_an_app_user_with_sudo_is_refused():
    f = converged_facts()
    f.modes["/srv"] = ("root", "hello-world", "775")
    with pytest.raises(DeployError, match="/srv is writable by the app user hello-world "
                                          r"\(root:hello-world 775\)"):
        app.plan(S, f, revision.Source("feedface", "0123456789abcdef"))
    f.user_groups = {"hello-world"}
    f.modes["/srv"] = ("root", "root", "1777")
    with pytest.raises(DeployError, match="/srv is writable by the app user"):
        app.plan(S, f, revision.Source("feedface", "0123456789abcdef"))
    tom = load(Config(overrides={"app": {"user": "tom"}}))
    f = converged_facts(tom)
    f.user_groups = {"tom", "sudo"}
    with pytest.raises(DeployError, match="app.user=tom is in group sudo, so the app could "
                                          "become root"):
        app.plan(tom, f, revision.Source("feedface", "0123456789abcdef"))


def test_an_older_deployment_moves_to_the_apps_own_account_and_says_so():
    f = converged_facts()
    f.program_conf = {"user": "tom", "directory": "/home/tom/hello-world/current"}
    f.current_hash = ""
    plan = app.plan(S, f, revision.Source("c0ffee", "0123456789abcdef"), rid="r")
    assert ", ".join(said(plan)) == (
        "released r, moved the app from user tom and /home/tom/hello-world to user hello-world "
        "and /srv/hello-world (the old tree stays, for you to remove: its logs are in "
        "/var/log/hello-world)")


def test_the_venv_is_built_by_the_build_account_then_sealed_and_markers_never_follow_links():
    lines = release.release_script(S, [], "r", "h", "v" * 16, True)
    text = "\n".join(lines)
    build = next(line for line in lines if line.startswith("build()"))
    assert "systemd-run --quiet --wait --pipe --collect --uid=fab-build-hello-world" in build
    assert all(f"-p {p}" in build for p in release.BUILD_SANDBOX)
    assert '-p "ReadWritePaths=$release"' in build
    assert "-p RuntimeMaxSec=900" in build
    venv = "/srv/hello-world/venvs/vvvvvvvvvvvvvvvv"
    pip = lines.index(f"  build {venv}/bin/python \"$whl/pip\" install -q "
                      "--disable-pip-version-check -r \"$reqs\" $extra || pip_failed")
    uv = lines.index(f'build "$uv" pip install -q --python {venv}/bin/python --link-mode=copy '
                     '--compile-bytecode -r "$reqs" $extra || pip_failed')
    assert lines.index('chown -hR fab-build-hello-world:fab-build-hello-world "$release"') < uv
    assert uv < pip < lines.index('chown -hR root:root "$release"')
    whl = "whl=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | tail -n1)"
    assert lines.index(whl) < lines.index("set -f  # $extra is split into requirements, never "
                                          "globbed")  # the glob finds Debian's pip wheel
    cache = "/var/cache/fab-uv/hello-world"  # uv's cache: the build account's, and only its
    assert f"-p ReadWritePaths=-{cache}" in build and f"--setenv=UV_CACHE_DIR={cache}" in build
    assert f"install -d -o fab-build-hello-world -g fab-build-hello-world -m 0700 {cache}" in text
    for path in ('"$release"', venv):
        assert f"chown -hR root:root {path}" in lines and f"chmod -R go-w,ug-s {path}" in lines
    marker = 'rm -rf "$release/.fab-release" "$release/.fab-release.new" "$release/.venv"'
    assert lines.index(marker) > lines.index(f"chown -hR root:root {venv}")
    assert "ln -sfn" in lines[lines.index(marker) + 1] and "printf" in lines[-3]
    assert lines.index('chown -hR root:hello-world "$release"') < lines.index(marker)
    assert " pip install" not in text.replace('build "$uv" pip', "").replace("build ", "") \
        .replace('"$whl/pip"', "")
    pip_only = release.release_script(dataclasses.replace(S, installer="pip"), [], "r", "h",
                                      "v" * 16, True)
    assert not [line for line in pip_only if "$uv" in line or "uv==" in line]


def test_uv_is_installed_by_root_from_the_pinned_wheel_checked_by_its_hash():
    lines = installer.install_uv()
    text = "\n".join(lines)
    assert f"uv=={installer.UV_VERSION} --hash=sha256:" in text
    assert "--no-deps --only-binary :all: --require-hashes" in text
    assert f"--target {installer.UV_HOME}.new" in text and f"mv {installer.UV_HOME}.new" in text
    assert len(installer.UV_HASHES) == len(set(installer.UV_HASHES)) and all(
        len(h) == 64 and int(h, 16) >= 0 for h in installer.UV_HASHES)
    assert lines[-1] == f"if {installer.UV} --version >/dev/null 2>&1; then uv={installer.UV}; fi"
    assert f"echo '{installer.FALLBACK}'" in text  # where it cannot be installed, pip builds


def test_a_git_password_reaches_git_only_through_its_credential_file():
    g = load(Config(overrides={"app": {"source": "https://d:s3cr3t@git.example.org/x.git"}}))
    script = revision.git_resolve_script(g)
    assert "s3cr3t" not in script
    assert "credential.helper='store --file=/srv/hello-world/repo.git.credentials'" in script
    assert "clone --quiet --mirror -- https://git.example.org/x.git" in script


def test_gunicorn_and_extra_packages_are_part_of_the_venv_and_its_hash(tmp_path):
    (tmp_path / "requirements.txt").write_text("flask==3.1.3\n")
    drivers = load(Config(overrides={"app": {"packages": "pymysql cryptography"}}))
    assert revision.requirements_hash(tmp_path, S) != revision.requirements_hash(tmp_path, drivers)
    lines = release.release_script(drivers, [], "r", "h", "v" * 16, True)
    assert "extra='pymysql cryptography'" in lines and "set -f" in "\n".join(lines)
    assert any(line.endswith(f'|| extra="$extra {revision.GUNICORN}"') for line in lines)


def test_shared_paths_are_linked_into_each_release_and_made_by_the_app_user():
    s = load(Config(overrides={"app": {"shared_paths": "logs/ instance/ app.db"}}))
    lines = release.link_shared(s)
    assert "runuser -u hello-world -- mkdir -p /srv/hello-world/shared/logs" in lines
    assert 'ln -s /srv/hello-world/shared/app.db "$release"/app.db' in lines
    assert not any(line.startswith(("install", "chown", "mkdir -p /srv")) for line in lines)
    script = release.release_script(s, ["UNPACK"], "r", "h", "v" * 16, True)
    assert script.index("UNPACK") < script.index(lines[0]) < \
        script.index('chown -hR fab-build-hello-world:fab-build-hello-world "$release"')
    assert release.link_shared(S) == []


def test_what_an_interrupted_run_half_built_is_removed_first():
    f = converged_facts()
    f.half_built = ["release 20270101T000000Z-cccccccc", "venv fedcba9876543210"]
    (cleanup,) = app.plan(S, f, revision.Source("feedface", "0123456789abcdef")).changes
    assert cleanup.script == ("rm -rf -- /srv/hello-world/releases/20270101T000000Z-cccccccc "
                              "/srv/hello-world/venvs/fedcba9876543210")
    assert "interrupted run" in cleanup.said
    assert parse("@@half_built\nrelease x\nvenv y\n").half_built == ["release x", "venv y"]


def test_a_release_that_would_not_fit_is_refused_before_anything_changes():
    from tasks.readers import Disk
    f = converged_facts()
    f.venvs = {"0123456789abcdef": 40 * 1024}
    f.disk = Disk(1024 * 1024, 50 * 1024)  # 50 MB free
    code_only = revision.Source("new", "0123456789abcdef", size_kb=2048)
    assert said(app.plan(S, f, code_only))[-1].startswith("released ")  # 2 + 32 MB fits
    new_reqs = revision.Source("new", "ffffffffffffffff", size_kb=2048)
    with pytest.raises(DeployError) as e:
        app.plan(S, f, new_reqs)
    assert str(e.value).startswith("not enough disk space for a new release: 50 MB free where "
                                   "/srv/hello-world lives, about 74 MB needed (the code 2 MB, "
                                   "a new virtualenv ~40 MB, 32 MB spare)")
    assert parse("@@disk\n1000 200\n").disk == (1000, 200) and parse("@@disk\n").disk is None


def test_a_changed_venv_with_the_same_code_ships_a_release_with_the_new_venv():
    f = converged_facts()  # its live release's venv: 0123456789abcdef
    same = app.plan(S, f, revision.Source(f.current_hash, "0123456789abcdef"), rid="r")
    assert not same.changes and same.ok.startswith("release ")
    packages = app.plan(S, f, revision.Source(f.current_hash, "fedcba9876543210"), rid="r")
    assert "released r with new virtualenv fedcba9876543210" in said(packages)


def test_the_prune_reads_the_facts_in_the_same_round_trip_and_says_why_it_failed(monkeypatch):
    sent = []

    def gather(h, needs, before):
        sent.append(before)
        h.facts = SimpleNamespace(needs=needs, read_after=before)
        return answers.pop(0)
    monkeypatch.setattr(app, "gather_facts", gather)
    answers = [[], ["rm: cannot remove 'x': Read-only file system", app.PRUNE_FAILED]]
    shipment = app.Shipment(source=None, rid="20261204T150145Z-7f56c7b3",
                            previous="20261204T150142Z-07b9bb59")
    h = SimpleNamespace(settings=S, facts=SimpleNamespace(needs=None), facts_fresh=False)
    shipment.prune(h)
    assert h.facts.read_after == sent[0] and h.facts_fresh  # the run need not read them again
    assert "20261204T150142Z-07b9bb59" in sent[0] and sent[0].startswith("( set -e\n")
    h.facts_fresh = False
    with pytest.raises(DeployError, match="could not be pruned: rm: cannot remove 'x': Read"):
        shipment.prune(h)
    assert not h.facts_fresh
