"""service configuration, learning modes, model lineage

A table for the service configuration set through the API; each event records the learning
mode it was ranked in and the model's own choice (Apprentice/LoggingOnly); each snapshot
records when its model lineage began (a reset or an import starts one).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 21:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('service_configuration',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.add_column('events', sa.Column('learning_mode', sa.String(length=16), nullable=True))
    op.add_column('events', sa.Column('model_index', sa.Integer(), nullable=True))
    op.add_column('model_snapshots', sa.Column('lineage_created_at', sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column('model_snapshots', 'lineage_created_at')
    op.drop_column('events', 'model_index')
    op.drop_column('events', 'learning_mode')
    op.drop_table('service_configuration')
