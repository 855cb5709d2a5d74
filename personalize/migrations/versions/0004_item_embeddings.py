"""item vectors: the catalog's ``embedding`` field

Users may send each item's vector (computed by any model they like); it is stored as
little-endian float32 bytes, 4 bytes a dimension, NULL for items without one. Existing items
keep no vector.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 20:45:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('items', sa.Column('embedding', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE items DROP COLUMN embedding")  # SQLite >= 3.35 and PostgreSQL alike
