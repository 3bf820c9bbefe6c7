"""The live runtime: market-data feed, Kafka I/O, the streaming job, execution and portfolio."""
