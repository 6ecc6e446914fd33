import sqlalchemy as sa

from app import db


class Post(db.Model):
    id = sa.Column(sa.Integer, primary_key=True)
    body = sa.Column(sa.String(140))
    done = sa.Column(sa.Boolean, nullable=False, default=False)
