-- The MLflow and Dagster databases beside the warehouse (config/platform.yaml names them).
CREATE DATABASE mlflow;
CREATE DATABASE dagster;
