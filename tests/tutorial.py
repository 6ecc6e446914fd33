"""The tutorial's own shape of app, for `fab init` and the installed tool: an app factory in
a package, `app = create_app()` in microblog.py, a .flaskenv, Flask-Migrate migrations,
static files in the package, a Procfile worker, and pyproject.toml only (no
requirements.txt). Made from tests/apps/microblog."""

import shutil
from pathlib import Path

MICROBLOG = Path(__file__).resolve().parent / "apps/microblog"
DEPENDENCIES = ["flask==3.1.3", "flask-sqlalchemy==3.1.1", "flask-migrate==4.1.0",
                "python-dotenv==1.1.1"]


def tutorial_app(root, secret="not-a-real-secret"):
    """Write the app into ROOT (with SECRET in its .env, which git would not ship)."""
    shutil.copytree(MICROBLOG, root, ignore=shutil.ignore_patterns("deploy.yaml",
                                                                   "requirements.txt"))
    (root / "pyproject.toml").write_text(
        '[project]\nname = "microblog"\nversion = "1.0"\ndependencies = [\n'
        + "".join(f'    "{d}",\n' for d in DEPENDENCIES) + "]\n")
    (root / ".flaskenv").write_text("FLASK_APP=microblog.py\n")
    (root / "Procfile").write_text("web: gunicorn microblog:app\nworker: python worker.py\n")
    (root / ".gitignore").write_text(".env\n__pycache__/\n")
    (root / ".env").write_text(f"SECRET_KEY={secret}\n")
    (root / "app/static/banner.txt").write_text("plain banner\n")  # no build step needed
    return root
