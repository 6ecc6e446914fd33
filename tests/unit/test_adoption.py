"""From the app's own folder: fab init's guesses, the settings file found there, every bad
setting named where it was set, pyproject.toml apps, and a failed venv build explained."""

import subprocess
import sys
from pathlib import Path

import pytest
from fabric import Config
from invoke import Exit

from tasks import destroy, init
from tasks.cli import settings_file
from tasks.config import ConfigError, load
from tasks.revision import requirements_hash
from tasks.shell import DeployError, pip_failure
from tasks.source import dependencies_file
from tests.tutorial import tutorial_app
from tests.unit.stack import S, converged_facts

PROJECT = Path(__file__).resolve().parents[2]


def settings_from(path):
    config = Config(runtime_path=str(path))
    config.load_runtime()
    return config


def test_init_reads_the_tutorial_app_and_its_file_loads_as_written(tmp_path, monkeypatch):
    app = tutorial_app(tmp_path / "microblog")
    monkeypatch.chdir(app)
    init.init.body(None)
    text = (app / "deploy.yaml").read_text()
    s = load(settings_from(app / "deploy.yaml"))
    assert (s.name, s.module, s.static_dir, s.release_command, s.processes) == (
        "microblog", "microblog:app", "app/static", "flask db upgrade",
        {"worker": "python worker.py"})
    assert (s.source, s.env_file) == (str(app), str(app / ".env"))
    assert s.shared_paths.split() == ["app.db", "logs/"]
    assert "# .flaskenv sets FLASK_APP=microblog.py, and microblog.py makes the app" in text
    assert "# migrations/ is Flask-Migrate's" in text
    assert "  # server_name: example.com" in text and "  # database: postgresql" in text
    assert all(len(line) <= 100 for line in text.splitlines())
    with pytest.raises(Exit, match="already there; fab init never overwrites it"):
        init.init.body(None)
    assert (app / "deploy.yaml").read_text() == text


def test_init_finds_a_factory_translations_an_instance_folder_and_a_procfile_release(tmp_path):
    (tmp_path / "flaskr").mkdir()
    (tmp_path / "flaskr/__init__.py").write_text(
        "import os\nfrom flask import Flask\n\ndef create_app():\n"
        "    app = Flask(__name__)\n"
        "    app.config['DATABASE'] = os.path.join(app.instance_path, 'flaskr.sqlite')\n"
        "    return app\n")
    (tmp_path / "flaskr/static").mkdir()
    (tmp_path / "flaskr/translations").mkdir()
    (tmp_path / "requirements.txt").write_text("flask\ngunicorn==23.0.0\npsycopg2-binary\n")
    (tmp_path / "Procfile").write_text("release: flask init-db\n")
    found = init.detect(tmp_path)
    assert {k: v for k, (v, _) in found.settings.items()} == {
        "source": ".", "name": tmp_path.name.lower()[:32],
        "module": "flaskr:create_app()", "static_dir": "flaskr/static",
        "release_command": "flask init-db",
        "build_command": "pybabel compile -d flaskr/translations",
        "shared_paths": ["instance/"]}
    questions = " ".join(q for q, _ in found.questions)
    assert "secrets" in questions and "(postgresql, by its driver)" in questions
    assert not any("gunicorn" in note for note in found.notes)


def test_init_asks_what_it_cannot_find(tmp_path):
    found = init.detect(tmp_path)
    assert set(found.settings) == {"source", "name"}
    assert "Which module makes the Flask app?" in init.settings_text(found, tmp_path)
    assert "Where are the app's dependencies?" in init.settings_text(found, tmp_path)


def test_the_settings_file_is_the_nearest_deploy_yaml(tmp_path):
    (tmp_path / "deploy.yaml").write_text("app: {}\n")
    (tmp_path / "app/sub").mkdir(parents=True)
    assert settings_file(tmp_path / "app/sub") == tmp_path / "deploy.yaml"
    assert settings_file(Path("/proc/self")) is None


def test_every_bad_setting_is_named_by_its_file_and_line_at_once(tmp_path):
    (tmp_path / "requirements.txt").write_text("flask\n")
    path = tmp_path / "deploy.yaml"
    path.write_text("app:\n  source: .\n  # a comment\n  workers: abc\n  modul: x:y\n"
                    "  static_url: static\n")
    with pytest.raises(ConfigError) as e:
        load(settings_from(path))
    assert e.value.problems[0].endswith("deploy.yaml:5: app.modul: no such setting; "
                                        "did you mean module?")
    path.write_text("app:\n  source: .\n  # a comment\n  workers: abc\n  static_url: static\n")
    with pytest.raises(ConfigError) as e:
        load(settings_from(path))
    where = [p.split(": app.")[0].rsplit("/", 1)[-1] for p in e.value.problems]
    assert where == ["deploy.yaml:4", "deploy.yaml:5"], e.value.problems


def test_a_pyproject_app_installs_its_project_dependencies(tmp_path):
    with pytest.raises(DeployError, match="no requirements.txt or pyproject.toml"):
        dependencies_file(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndynamic = ["dependencies"]\n')
    with pytest.raises(DeployError, match="its dependencies are dynamic"):
        dependencies_file(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project\n')
    with pytest.raises(DeployError, match="not valid TOML"):
        dependencies_file(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["flask"]\n')
    assert dependencies_file(tmp_path) == tmp_path / "pyproject.toml"
    before = requirements_hash(tmp_path, S)
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["flask==3.1.3"]\n')
    assert requirements_hash(tmp_path, S) != before
    (tmp_path / "requirements.txt").write_text("flask\n")  # it wins when both are there
    assert dependencies_file(tmp_path) == tmp_path / "requirements.txt"


PIP_OUTPUT = """  error: subprocess-exited-with-error

  × Building wheel for greenlet (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [113 lines of output]
      error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
  ERROR: Failed building wheel for greenlet
ERROR: Failed to build installable wheels for some pyproject.toml based projects (greenlet)
fab: the venv build failed on the server's Python 3.13.5
fab: requirement flask==3.1.3
fab: requirement greenlet==3.0.1 ; python_version >= "3"
"""


def test_a_failed_venv_build_names_the_servers_python_and_the_package_without_a_wheel():
    assert pip_failure(PIP_OUTPUT) == (
        'could not build greenlet==3.0.1 ; python_version >= "3" for the server\'s Python '
        "3.13 (no wheel of that version for it): pin a newer greenlet with wheels for Python "
        "3.13, or use a server with an older Python")
    other = "ERROR: No matching distribution found for flaskk\nfab: the venv build failed on " \
            "the server's Python 3.11.2\nfab: requirement flaskk\n"
    assert pip_failure(other) == ("the virtualenv could not be built with the server's Python "
                                  "3.11: ERROR: No matching distribution found for flaskk")
    assert pip_failure("E: Unable to locate package x") is None
    forged = "fab: the venv build failed on the server's Python 2.7\nfab: requirement evil==6.6\n"
    assert pip_failure(forged + PIP_OUTPUT) == pip_failure(PIP_OUTPUT)  # a build printed it


UV_OUTPUT = """error: Failed to build `greenlet==3.0.1`
  cause: The build backend returned an error
  cause: Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)

         [stderr]
         error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory

hint: This usually indicates a problem with the package or the build environment.
fab: the venv build failed on the server's Python 3.13.5
fab: requirement greenlet==3.0.1
"""


def test_uvs_failures_read_as_pips_do():
    assert pip_failure(UV_OUTPUT) == (
        "could not build greenlet==3.0.1 for the server's Python 3.13 (no wheel of that "
        "version for it): pin a newer greenlet with wheels for Python 3.13, or use a server "
        "with an older Python")
    unsolved = ("error: No solution found when resolving dependencies\n  cause: Because "
                "flaskk was not found in the package registry and you require flaskk==1.0, we "
                "can conclude that your requirements are unsatisfiable.\nfab: the venv build "
                "failed on the server's Python 3.11.2\nfab: requirement flaskk==1.0\n")
    assert pip_failure(unsolved) == (
        "the virtualenv could not be built with the server's Python 3.11: No solution found "
        "when resolving dependencies: Because flaskk was not found in the package registry "
        "and you require flaskk==1.0, we can conclude that your requirements are "
        "unsatisfiable.")


def test_destroy_keeps_the_data_and_its_account_unless_told():
    facts = converged_facts()
    kept = destroy.destroy_script(S, facts, with_data=False)
    text = "\n".join(kept)
    assert "rm -f /etc/supervisor/conf.d/hello-world.conf" in text
    assert "/srv/hello-world/releases /srv/hello-world/venvs" in text
    assert "/srv/hello-world/shared" not in text and "/srv/hello-world/backups" not in text
    assert "userdel fab-build-hello-world" in text and "userdel hello-world" not in text
    assert "! -path /etc/hello-world/database.env" in text
    gone = "\n".join(destroy.destroy_script(S, facts, with_data=True))
    assert "rm -rf /srv/hello-world /etc/hello-world" in gone and "userdel hello-world" in gone
    facts.job_units = {"fab:hello-world:digest.timer", "fab:hello-world:digest.service"}
    timers = "\n".join(destroy.destroy_script(S, facts, with_data=False))
    assert "systemctl disable --now fab:hello-world:digest.service fab:hello-world:digest.timer " \
        "fab-backup:hello-world.service fab-backup:hello-world.timer" in timers
    assert "rm -f /etc/systemd/system/fab:hello-world:digest.service" in timers


def test_destroy_without_yes_changes_nothing_and_says_how():
    class C:
        host = "web1"
    with pytest.raises(Exit, match="web1: fab destroy removes the app from it: run it with "
                                   "--yes"):
        destroy.destroy.body(C())


def test_the_installed_program_ends_quietly_when_its_reader_stops():
    code = "import sys; sys.argv = ['fab', '--list']; from tasks.cli import main; main()"
    proc = subprocess.run(f"{sys.executable} -c {code!r} | head -n1", shell=True, cwd=PROJECT,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("Subcommands") and "Traceback" not in proc.stderr
