"""multi-slot events: per-slot choices and rewards, and a model lineage of their own

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 20:55:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('events', sa.Column('slots', sa.JSON(), nullable=True))
    op.add_column('events', sa.Column('learned_slot_rewards', sa.JSON(), nullable=True))
    op.add_column('rewards', sa.Column('slot', sa.Integer(), nullable=True))
    op.create_table('multislot_snapshots',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('vw_args', sa.Text(), nullable=False),
    sa.Column('model', sa.LargeBinary(), nullable=False),
    sa.Column('events_learned', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )


def downgrade() -> None:
    op.drop_table('multislot_snapshots')
    op.drop_column('rewards', 'slot')
    op.drop_column('events', 'learned_slot_rewards')
    op.drop_column('events', 'slots')
