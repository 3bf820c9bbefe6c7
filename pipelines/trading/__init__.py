"""Trading rules and the one trading decision that backtest and live both call."""
