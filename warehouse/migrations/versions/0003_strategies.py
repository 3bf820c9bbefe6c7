"""Strategies: dim_strategy names the strategy and its parameters; the backtest's rejected orders.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:05:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add dim_strategy.strategy and .params; create fact_backtest_rejection."""
    op.add_column('dim_strategy', sa.Column('strategy', sa.String(length=100), nullable=True,
                                            comment='the strategy: threshold, topk_dropout, ...'), schema='dw')
    op.add_column('dim_strategy', sa.Column('params', sa.String(length=2000), nullable=True,
                                            comment="the strategy's parameters (JSON)"), schema='dw')
    op.alter_column('dim_strategy', 'family', existing_type=sa.String(length=50),
                    comment='the model family whose predictions it trades', schema='dw')
    op.create_table('fact_backtest_rejection',
    sa.Column('dataset_key', sa.Integer(), nullable=False),
    sa.Column('strategy_key', sa.Integer(), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('symbol_key', sa.Integer(), nullable=False),
    sa.Column('date_key', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Double(), nullable=False, comment='signed shares'),
    sa.Column('price', sa.Double(), nullable=False),
    sa.Column('limit_hit', sa.String(length=50), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['dataset_key'], ['dw.dim_dataset.dataset_key'], name=op.f('fk_fact_backtest_rejection_dataset_key')),
    sa.ForeignKeyConstraint(['date_key'], ['dw.dim_date.date_key'], name=op.f('fk_fact_backtest_rejection_date_key')),
    sa.ForeignKeyConstraint(['strategy_key'], ['dw.dim_strategy.strategy_key'], name=op.f('fk_fact_backtest_rejection_strategy_key')),
    sa.ForeignKeyConstraint(['symbol_key'], ['dw.dim_symbol.symbol_key'], name=op.f('fk_fact_backtest_rejection_symbol_key')),
    sa.PrimaryKeyConstraint('dataset_key', 'strategy_key', 'ts', 'symbol_key', name=op.f('pk_fact_backtest_rejection')),
    schema='dw'
    )
    op.create_index(op.f('ix_fact_backtest_rejection_dataset_key_strategy_key_date_key'), 'fact_backtest_rejection',
                    ['dataset_key', 'strategy_key', 'date_key'], unique=False, schema='dw')


def downgrade() -> None:
    op.drop_index(op.f('ix_fact_backtest_rejection_dataset_key_strategy_key_date_key'),
                  table_name='fact_backtest_rejection', schema='dw')
    op.drop_table('fact_backtest_rejection', schema='dw')
    op.drop_column('dim_strategy', 'params', schema='dw')
    op.drop_column('dim_strategy', 'strategy', schema='dw')
