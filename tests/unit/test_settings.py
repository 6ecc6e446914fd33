"""Config validation: every bad value is caught before any connection, one line each."""

import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from invoke import Config

from tasks.config import ConfigError, load, problems_of, validate
from tasks.fields import DEFAULTS


def config(**app):
    return Config(overrides={"app": app})


def test_defaults_are_the_tutorial_setup():
    s = load(config())
    assert (s.name, s.user, s.dir, s.socket, s.workers, s.server_name) == \
        ("hello-world", "hello-world", "/srv/hello-world", "/srv/hello-world/run/gunicorn.sock",
         4, "_")
    assert s.current == "/srv/hello-world/current"
    assert s.supervisor_conf == "/etc/supervisor/conf.d/hello-world.conf"


@pytest.mark.parametrize("key, value, fragment", [
    ("name", "Hello World", "app.name='Hello World'"),
    ("name", "x;rm -rf /", "app.name="),
    ("user", "tom;id", "app.user="),
    ("user", "tom\n", "app.user="),  # `$` alone would accept a trailing newline
    ("name", "app\n", "app.name="),
    ("dir", "relative/path", "absolute path"),
    ("dir", "/srv/../etc", "no '..'"),
    ("dir", "/srv/app\nid", "absolute path"),
    ("dir", "/", "normalised"),
    ("workers", 0, "from 1 to 64"),
    ("workers", "0", "app.workers=0: must be from 1 to 64"),  # as FABRIC_APP_WORKERS gives it
    ("workers", "four", "whole number"),
    ("hooks", {"pre": "make check"}, "app.hooks: 'pre' is not a hook"),
    ("hooks", {"failed": "a\nb"}, "app.hooks.failed: must be a command on one line"),
    ("notify", "ftp://chat.example.org/x", "must be an http(s) URL"),
    ("port", 8000, "unix socket in <dir>/run"),  # retired: says why
    ("workers", 0, "from 1 to 64"),
    ("workers", True, "whole number"),
    ("server_name", "exa mple..com", "host names"),
    ("server_name", "a.com;", "host names"),
    ("module", "app:app; id", "WSGI entry point"),
    ("health_path", "no-slash", "URL path"),
    ("health_text", "two\nlines", "one line"),
    ("source", "https://example.org/app.git; id", "not a git URL"),
    ("source", "ssh://-oProxyCommand=id/x", "not a git URL"),
    ("source", "ssh://-oProxyCommand/x", "not a git URL"),
    ("ref", "--upload-pack=id", "branch, tag or commit"),
    ("ref", "main..evil", "branch, tag or commit"),
    ("database", "oracle", "one of none, postgresql, mysql, sqlite"),
    ("database_name", "shop; DROP DATABASE x", "lowercase letters, digits and '_'"),
    ("database_name", "1shop", "not starting with a digit"),
    ("redis", "maybe", "true or false"),
    ("keep_backups", 0, "from 1 to 1000"),
    ("auto_reboot_at", "4am", "a time like '04:30'"),
    ("auto_reboot_at", "24:00", "a time like '04:30'"),
    ("auto_reboot_at", "04:30; reboot", "a time like '04:30'"),
])
def test_bad_values_are_named_with_the_fix(key, value, fragment):
    with pytest.raises(ConfigError) as e:
        validate(config(**{key: value}))
    assert len(e.value.problems) == 1
    assert fragment in e.value.problems[0] and f"app.{key}" in e.value.problems[0]


@pytest.mark.parametrize("engine, values", [
    ("postgresql", {"database_name": "postgres"}), ("postgresql", {"name": "template1"}),
    ("mysql", {"database_name": "mysql"}), ("mysql", {"database_name": "root"}),
])
def test_an_engines_own_names_are_refused_as_the_apps_database(engine, values):
    with pytest.raises(ConfigError, match="is the engine's own"):
        validate(config(database=engine, **values))
    validate(config(database="none", **values))  # no database: the name means nothing


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        validate(config(name="BAD", keep_releases=1, workers=999))
    assert len(e.value.problems) == 3


def test_unknown_keys_and_variables_are_refused_all_at_once_with_what_was_meant(monkeypatch):
    monkeypatch.setenv("FABRIC_APP_MODUL", "shop:app")
    monkeypatch.setenv("FABRIC_APP_NOTHING_LIKE_IT", "1")
    monkeypatch.setenv("FABRIC_APP_PORT", "8000")
    with pytest.raises(ConfigError) as e:
        validate(config(wokers=3))
    assert e.value.problems[:3] == [
        "app.wokers: no such setting; did you mean workers?",
        "FABRIC_APP_MODUL: no such setting; did you mean FABRIC_APP_MODULE?",
        "FABRIC_APP_NOTHING_LIKE_IT: no such setting"]
    assert e.value.problems[3].startswith("FABRIC_APP_PORT: gunicorn listens on a unix socket")


@pytest.mark.parametrize("text, value", [("false", False), ("no", False), ("0", False),
                                         ("off", False), ("True", True), ("yes", True),
                                         ("1", True), ("on", True)])
def test_a_flag_from_a_variable_means_what_it_says(monkeypatch, text, value):
    monkeypatch.setenv("FABRIC_APP_REDIS", text)
    monkeypatch.setenv("FABRIC_APP_DEFAULT_SERVER", text)
    s = load(config())
    assert (s.redis, s.default_server) == (value, value)


def test_a_flag_that_is_not_one_is_refused(monkeypatch):
    monkeypatch.setenv("FABRIC_APP_REDIS", "maybe")
    with pytest.raises(ConfigError, match=r"app.redis='maybe': must be true or false"):
        load(config())


def test_words_are_a_yaml_list_or_one_string_of_them():
    listed = load(config(shared_paths=["logs/", "app.db"], packages=["six==1.17.0", "pymysql"],
                         server_name=["example.org", "www.example.org"]))
    assert (listed.shared_paths, listed.packages, listed.server_name) == \
        ("logs/ app.db", "six==1.17.0 pymysql", "example.org www.example.org")
    assert load(config(shared_paths="logs/ app.db")).shared_items == listed.shared_items
    with pytest.raises(ConfigError, match="app.shared_paths: 3 must be a name"):
        load(config(shared_paths=["logs/", 3]))


def test_every_bad_variable_is_reported_at_once_and_mappings_take_json(monkeypatch):
    monkeypatch.setenv("FABRIC_APP_WORKERS", "abc")
    monkeypatch.setenv("FABRIC_APP_KEEP_RELEASES", "1")
    monkeypatch.setenv("FABRIC_APP_PROCESSES", "not json")
    with pytest.raises(ConfigError) as e:
        load(config())
    assert [p.split(": ")[:2] for p in e.value.problems] == [
        ["FABRIC_APP_WORKERS", "app.workers='abc'"],
        ["FABRIC_APP_KEEP_RELEASES", "app.keep_releases=1"],
        ["FABRIC_APP_PROCESSES", "app.processes='not json'"]]
    monkeypatch.setenv("FABRIC_APP_WORKERS", "3")
    monkeypatch.setenv("FABRIC_APP_KEEP_RELEASES", "4")
    monkeypatch.setenv("FABRIC_APP_PROCESSES", '{"worker": "rq worker"}')
    s = load(config())
    assert (s.workers, s.keep_releases, s.processes) == (3, 4, {"worker": "rq worker"})


def test_a_file_or_an_override_wins_over_a_variable(monkeypatch):
    monkeypatch.setenv("FABRIC_APP_WORKERS", "3")
    assert load(config(workers=5)).workers == 5


def test_env_var_strings_are_accepted_for_numbers():
    assert load(config(workers="3", keep_releases="7")).keep_releases == 7


def test_the_app_runs_as_its_own_account_never_root_nor_the_ssh_user():
    assert (load(config()).user, load(config(name="shop")).user) == ("hello-world", "shop")
    assert load(config(name="shop")).dir == "/srv/shop"
    with pytest.raises(ConfigError, match="would run as root"):
        load(config(user="root"))
    assert load(config(user="tom")).user == "tom"  # refused on the server if it has sudo


def test_a_password_in_a_git_url_is_kept_off_command_lines_and_masked_in_output():
    s = load(config(source="https://deploy:s3cr3t@git.example.org/shop.git"))
    assert s.git_url == "https://git.example.org/shop.git"
    assert s.source_shown == "https://****@git.example.org/shop.git"
    assert s.git_credentials == "https://deploy:s3cr3t@git.example.org/shop.git"
    plain = load(config(source="https://git.example.org/shop.git"))
    assert plain.git_url == plain.source_shown == plain.source and not plain.git_credentials
    ssh = load(config(source="git@git.example.org:shop.git"))
    assert ssh.git_url == ssh.source_shown == ssh.source and not ssh.git_credentials


@pytest.mark.parametrize("url, credentials", [
    ("https://ghp_T0KEN@github.com/o/shop.git", "https://ghp_T0KEN:@github.com/o/shop.git"),
    ("https://ghp_T0KEN:x-oauth-basic@github.com/o/shop.git",
     "https://ghp_T0KEN:x-oauth-basic@github.com/o/shop.git"),
])
def test_a_token_in_the_user_part_of_a_git_url_is_a_credential_too(url, credentials):
    s = load(config(source=url))
    assert (s.git_url, s.source_shown, s.git_credentials) == \
        ("https://github.com/o/shop.git", "https://****@github.com/o/shop.git", credentials)
    with pytest.raises(ConfigError) as e:  # refused: its token is not printed either
        load(config(source=url.replace("/o/", "/o/ ;")))
    assert "T0KEN" not in str(e.value) and "****@github.com" in str(e.value)


def test_missing_app_folder_is_reported():
    with pytest.raises(ConfigError, match="/nonexistent/app: no such folder"):
        validate(config(source="/nonexistent/app"))


SHELL_META = set(";|&$`\\\"'<>(){}*?!#~\n\r\t ")
NGINX_META = set(";{}$\\\"'#\n\r\t ")
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@pytest.mark.parametrize("key", ["name", "user", "dir", "server_name", "module",
                                 "health_path", "tls", "letsencrypt_email", "ref"])
@given(value=text)
def test_no_accepted_value_carries_shell_syntax(key, value):
    """Whatever string comes in, it is refused or it cannot change a shell command."""
    values = {**DEFAULTS, key: value}
    if problems_of(values):
        return
    if key == "server_name":  # goes into nginx config, never a shell; `*.` wildcards are valid
        assert all(set(n).isdisjoint(NGINX_META) for n in value.split())
        return
    assert set(value).isdisjoint(SHELL_META), value
    assert shlex.split(shlex.quote(value)) == [value]


@given(keep=st.one_of(st.integers(), st.text(max_size=8)),
       workers=st.one_of(st.integers(), st.text(max_size=8)))
def test_numbers_are_in_range_or_refused(keep, workers):
    values = {**DEFAULTS, "keep_releases": keep, "workers": workers}
    if not problems_of(values):
        assert 2 <= int(keep) <= 100 and 1 <= int(workers) <= 64


def test_fabric_yaml_documents_every_default_with_its_value():
    from invoke.util import yaml

    from tasks.config import PROJECT
    lines = (PROJECT / "fabric.yaml").read_text().splitlines()
    start = lines.index("# app:")
    block = [line[2:] for line in lines[start:] if line.startswith("# ")]
    assert yaml.safe_load("\n".join(block))["app"] == DEFAULTS
    assert "app" not in yaml.safe_load("\n".join(lines))  # documented, not written twice


def test_every_setting_can_be_overridden_by_an_env_var(monkeypatch):
    from fabric import Config

    from tasks import namespace
    from tasks.config import LOCAL_PATHS, raw
    def given(default):  # what an env var says, and what the setting becomes
        if isinstance(default, bool):
            return "0", False
        return ("7", 7) if isinstance(default, int) else ("v", "v")
    scalars = {key: default for key, default in DEFAULTS.items() if not isinstance(default, dict)}
    for key, default in scalars.items():
        monkeypatch.setenv(f"FABRIC_APP_{key.upper()}", given(default)[0])
    monkeypatch.setenv("FABRIC_APP_ROLES", '{"web": ["web1"]}')  # mappings: JSON
    monkeypatch.setenv("FABRIC_APP_PROCESSES", '{"worker": "rq worker"}')
    config = Config()
    config.load_collection(namespace.configuration())
    config.load_shell_env()
    assert raw(config) == {**DEFAULTS, **{key: given(d)[1] for key, d in scalars.items()},
                           **{key: str(Path.cwd() / "v") for key in LOCAL_PATHS},
                           "roles": {"web": ["web1"]}, "processes": {"worker": "rq worker"}}


def test_env_file_lines_are_checked_without_echoing_values(tmp_path):
    env = tmp_path / "prod.env"
    env.write_text("# comment\nGOOD=1\nbad line with s3cret\n2BAD=x\n")
    with pytest.raises(ConfigError) as e:
        validate(config(env_file=str(env)))
    assert [p.split(":")[0] for p in e.value.problems] == ["app.env_file line 3",
                                                           "app.env_file line 4"]
    assert "s3cret" not in str(e.value)


@pytest.mark.parametrize("values, fragment", [
    ({"tls": "on"}, "app.tls='on': must be one of off, self-signed, letsencrypt, custom"),
    ({"tls": "custom", "tls_cert": "/x.crt"}, "app.tls_key=None: tls: custom needs"),
    ({"tls_cert": "/x.crt"}, "app.tls_cert is set but app.tls='off'"),
    ({"hsts_max_age": -1}, "app.hsts_max_age=-1: must be from 0"),
    ({"letsencrypt_email": "not an address"}, "app.letsencrypt_email="),
    ({"tls": "letsencrypt", "server_name": "example.org"}, "needs app.letsencrypt_email"),
    ({"tls": "letsencrypt", "letsencrypt_email": "ops@example.org"}, "real domain names"),
])
def test_bad_tls_settings_are_named(values, fragment):
    with pytest.raises(ConfigError) as e:
        validate(config(**values))
    assert [p for p in e.value.problems if fragment in p], e.value.problems


def test_a_certificate_must_be_readable_current_and_match_its_key(tmp_path):
    from tests.certs import make_certificate
    cert, key = make_certificate(tmp_path, "a.test")
    s = load(config(tls="custom", tls_cert=str(cert), tls_key=str(key)))
    assert (s.tls, s.tls_cert, s.tls_cert_path) == \
        ("custom", str(cert), "/etc/hello-world/tls/fullchain.pem")
    _, other_key = make_certificate(tmp_path, "b.test")
    old_cert, old_key = make_certificate(tmp_path, "old.test", days=-2)
    for pair, fragment in (((cert, other_key), "does not belong"),
                           ((old_cert, old_key), "expired on"),
                           ((key, key), "not a readable PEM certificate"),
                           ((cert, tmp_path / "nope"), "No such file")):
        with pytest.raises(ConfigError, match=fragment):
            validate(config(tls="custom", tls_cert=str(pair[0]), tls_key=str(pair[1])))


def test_letsencrypt_certificates_live_where_certbot_puts_them():
    s = load(config(tls="letsencrypt", server_name="example.org www.example.org",
                        letsencrypt_email="ops@example.org"))
    assert s.tls_cert_path == "/etc/letsencrypt/live/hello-world/fullchain.pem"
    assert s.site_url == "https://127.0.0.1"


def test_relative_paths_resolve_against_the_file_that_sets_them(tmp_path, monkeypatch):
    from fabric import Config as FabricConfig

    from tasks.config import PROJECT, raw
    app = tmp_path / "shop"
    app.mkdir()
    (app / "deploy.yaml").write_text("app:\n  source: .\n  env_file: prod.env\n")
    config = FabricConfig(runtime_path=str(app / "deploy.yaml"))
    config.load_runtime()
    values = raw(config)
    assert (values["source"], values["env_file"]) == (str(app), str(app / "prod.env"))
    assert raw(FabricConfig())["source"] == str(PROJECT / "hello_world")  # the default
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FABRIC_APP_TLS_CERT", "here.pem")
    config.load_collection({"app": dict(DEFAULTS)})
    config.load_shell_env()
    assert raw(config)["tls_cert"] == str(tmp_path / "here.pem")  # an env var: the cwd
    git = FabricConfig(overrides={"app": {"source": "git@example.org:shop.git"}})
    assert raw(git)["source"] == "git@example.org:shop.git"


def test_fabric_yaml_and_the_readme_list_every_setting_as_the_table_says():
    from tasks.config import PROJECT
    from tasks.fields import FIELDS
    from tasks.settings_docs import fabric_yaml, readme_table

    fix = "run `make settings-docs` after changing tasks/fields.py"
    assert fabric_yaml() in (PROJECT / "fabric.yaml").read_text(), fix
    assert readme_table() in (PROJECT / "README.md").read_text(), fix
    assert [f.name for f in FIELDS] == list(DEFAULTS)
    assert all(f"#   {f.name}: " in fabric_yaml() and f"| `{f.name}` |" in readme_table()
               for f in FIELDS)


def test_a_settings_file_that_is_missing_or_has_no_app_section_is_refused(tmp_path):
    from fabric import Config as FabricConfig

    missing = FabricConfig(runtime_path=str(tmp_path / "deploy.yml"))
    missing.load_runtime()
    with pytest.raises(ConfigError, match=r"-f .*deploy.yml: no such file"):
        load(missing)
    loose = tmp_path / "deploy.yaml"
    loose.write_text("source: .\nworkers: 3\n")
    flat = FabricConfig(runtime_path=str(loose))
    flat.load_runtime()
    with pytest.raises(ConfigError, match="source, workers at the top level: put the settings "
                                          "under `app:`"):
        load(flat)


def test_outside_this_checkout_an_app_without_a_source_is_refused(tmp_path, monkeypatch):
    from tasks.config import PROJECT

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no deploy.yaml in .* or a folder above it: run `fab "
                                          "init` in your app's folder"):
        load(config())
    (tmp_path / "requirements.txt").write_text("flask\n")
    assert load(config(source=str(tmp_path))).source == str(tmp_path)
    monkeypatch.chdir(PROJECT)
    assert load(config()).source.endswith("hello_world")  # the demo, in its own checkout
