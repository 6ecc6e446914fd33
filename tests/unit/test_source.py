"""What ships from the app's folder: what git would ship, never its secrets."""

import io
import os
import tarfile

import pytest
from invoke import Config

from tasks.config import ConfigError, validate
from tasks.shell import DeployError
from tasks.source import select, tarball


def shipped(root, **kwargs):
    return [f.relative_to(root).as_posix() for f in select(root, **kwargs).files]


def test_content_hash_and_tarball_are_deterministic(tmp_path):
    from tasks.source import content_hash
    (tmp_path / "requirements.txt").write_text("flask\n")
    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    files = select(tmp_path).files
    first = (content_hash(tmp_path, files), tarball(tmp_path, files))
    assert first == (content_hash(tmp_path, files), tarball(tmp_path, files))
    names = tarfile.open(fileobj=io.BytesIO(first[1])).getnames()
    assert names == ["app.py", "requirements.txt"]
    (tmp_path / "app.py").write_text("x = 2\n")
    assert content_hash(tmp_path, files) != first[0]


def test_secrets_and_local_state_never_ship_and_the_dry_run_says_so(tmp_path):
    """Issue 24: `.env`, the instance folder, keys, a dev SQLite file and an env_file kept in
    the app folder shipped, world-readable, in every release."""
    for name in ("app.py", "requirements.txt", ".flaskenv", ".env", ".env.local", "app.db",
                 "server.key", "instance/config.py", "instance/app.sqlite", "prod.env",
                 "static/site.css"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    chosen = select(tmp_path, env_file=str(tmp_path / "prod.env"))
    assert shipped(tmp_path, env_file=str(tmp_path / "prod.env")) == \
        [".flaskenv", "app.py", "requirements.txt", "static/site.css"]
    assert chosen.left_out == {"fab's secret names": ["instance/", ".env", ".env.local",
                                                      "app.db", "server.key"],
                               "app.env_file": ["prod.env"]}
    assert chosen.summary() == ("4 files, 1 KB; left out: 5 by fab's secret names; prod.env "
                                "(app.env_file)")


def test_gitignore_files_apply_below_their_folder_and_the_operator_has_the_last_word(tmp_path):
    for name in ("app.py", "build.log", "notes/draft.md", "pkg/gen.py", "pkg/keep.log",
                 "pkg/sub/gen.py", "data/geo.db", "docs/a.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".gitignore").write_text("*.log\nnotes/\n")
    (tmp_path / "pkg/.gitignore").write_text("gen.py\n!keep.log\n")
    assert shipped(tmp_path, exclude="docs/ !data/geo.db") == \
        [".gitignore", "app.py", "data/geo.db", "pkg/.gitignore", "pkg/keep.log"]
    assert select(tmp_path).left_out[".gitignore"] == ["notes/", "build.log", "pkg/gen.py",
                                                       "pkg/sub/gen.py"]


def test_links_in_the_app_folder_stay_links_and_may_not_leave_it(tmp_path):
    app_dir = tmp_path / "app"
    (app_dir / "static").mkdir(parents=True)
    (app_dir / "requirements.txt").write_text("flask\n")
    (app_dir / "static" / "logo.png").write_bytes(b"png")
    (app_dir / "static" / "alias.png").symlink_to("logo.png")
    files = select(app_dir).files
    names = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(tarball(app_dir, files)))}
    assert names["static/alias.png"].issym() and names["static/alias.png"].linkname == "logo.png"
    secret = tmp_path / "id_ed25519"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    # a chain whose text stays inside but whose resolved target does not (issue 24)
    os.symlink(".", app_dir / "a")
    for target in (str(secret), "../../id_ed25519", "../a/../.."):
        (app_dir / "static" / "x.png").unlink(missing_ok=True)
        (app_dir / "static" / "x.png").symlink_to(target)
        with pytest.raises(DeployError, match=r"static/x.png links to .*outside the app folder"):
            select(app_dir)
        with pytest.raises(ConfigError, match="outside the app folder"):
            validate(Config(overrides={"app": {"source": str(app_dir)}}))
