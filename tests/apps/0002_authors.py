"""authors: the second migration, added to the test app by the test that deploys it"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade():
    op.add_column("post", sa.Column("author", sa.String(64), nullable=False,
                                    server_default="anonymous"))


def downgrade():
    op.drop_column("post", "author")
