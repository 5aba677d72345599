"""The offline side: point-in-time joins (training sets) and latest-per-key reads
(materialization) over source data.

::

    plan.py        JoinPlan / LatestPlan: typed, engine-neutral; every request check
    engine.py      OfflineEngine (the interface) and open_offline_engine (the configured one)
    entities.py    the one entity-row reader (DataFrame, Arrow, Parquet, folder, CSV, SQL)
    duckdb.py      DuckDBEngine, embedded, over Parquet files; its SQL in duckdb_sql.py
    bigquery/      BigQueryEngine, the same plans as BigQuery SQL and jobs
"""
