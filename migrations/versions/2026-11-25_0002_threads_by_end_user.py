"""threads by end user: one index for "the latest thread of this customer on this channel"

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_threads_end_user", "threads", ["channel_id", "end_user_id", "last_message_at"])
    op.drop_index("ix_threads_end_user_id", table_name="threads")


def downgrade() -> None:
    op.create_index("ix_threads_end_user_id", "threads", ["end_user_id"])
    op.drop_index("ix_threads_end_user", table_name="threads")
