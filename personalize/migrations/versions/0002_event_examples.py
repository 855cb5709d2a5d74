"""event examples in a table of their own

Every reward and learner step updates the event row; with the kilobytes of its example in
the same row, each update rewrote those pages too. The examples move, unchanged, to
``event_examples`` (one row per event, same ``seq``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:55:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('event_examples',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('example', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['seq'], ['events.seq'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq')
    )
    op.execute("INSERT INTO event_examples (seq, example) SELECT seq, example FROM events")
    op.execute("ALTER TABLE events DROP COLUMN example")  # SQLite >= 3.35 and PostgreSQL alike


def downgrade() -> None:
    op.execute("ALTER TABLE events ADD COLUMN example TEXT NOT NULL DEFAULT ''")
    op.execute("UPDATE events SET example = (SELECT example FROM event_examples WHERE event_examples.seq = events.seq)")
    op.drop_table('event_examples')
