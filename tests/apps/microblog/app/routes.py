from pathlib import Path

from flask import Blueprint

from app import db
from app.models import Post

bp = Blueprint("main", __name__)
VERSION = "v1"


@bp.route("/health")
def health():
    return "ok"


@bp.route("/add/<body>")
def add(body):
    db.session.add(Post(body=body))
    db.session.commit()
    return "added"


@bp.route("/")
def index():
    banner = (Path(__file__).parent / "static" / "banner.txt").read_text().strip()
    posts = db.session.scalars(db.select(Post).order_by(Post.id)).all()
    done = sum(post.done for post in posts)
    return f"{VERSION} {banner} posts={len(posts)} done={done}"
