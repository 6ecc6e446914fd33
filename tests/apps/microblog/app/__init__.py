"""A test app shaped like the Flask Mega-Tutorial's microblog: an app factory, SQLAlchemy
with Flask-Migrate, a `logs/` folder and a SQLite file next to the code, a CLI command the
build step runs, static files inside the package, and no gunicorn in its requirements."""

import logging
import os
from logging.handlers import RotatingFileHandler

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

basedir = os.path.abspath(os.path.dirname(os.path.dirname(__file__)))
db = SQLAlchemy()
migrate = Migrate()


def create_app():
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get(
        "DATABASE_URL", "sqlite:///" + os.path.join(basedir, "app.db"))
    db.init_app(app)
    migrate.init_app(app, db)
    from app import cli, routes
    app.register_blueprint(routes.bp)
    cli.register(app)
    if not app.debug and not app.testing:  # as the tutorial does, in its working directory
        if not os.path.exists("logs"):
            os.mkdir("logs")
        handler = RotatingFileHandler("logs/microblog.log", maxBytes=10240, backupCount=10)
        handler.setLevel(logging.INFO)
        app.logger.addHandler(handler)
        app.logger.setLevel(logging.INFO)
        app.logger.info("microblog startup")
    return app
