"""Execution analysis: each backtest fill keeps the close of the bar its order was decided at.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 13:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add fact_backtest_trade.decision_close (null for fills loaded before it)."""
    op.add_column('fact_backtest_trade', sa.Column('decision_close', sa.Double(), nullable=True,
                                                   comment='close of the bar the order was decided at'), schema='dw')


def downgrade() -> None:
    op.drop_column('fact_backtest_trade', 'decision_close', schema='dw')
