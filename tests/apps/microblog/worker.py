"""A second process that does real work, as an RQ worker would: it marks new posts done."""

import time

from app import create_app, db
from app.models import Post

app = create_app()
with app.app_context():
    while True:
        for post in db.session.scalars(db.select(Post).where(Post.done.is_(False))):
            post.done = True
            print("done", post.id, flush=True)
        db.session.commit()
        time.sleep(0.5)
