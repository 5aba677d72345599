"""BigQuery as the offline engine, for data that outgrows one machine.

::

    engine.py   BigQueryEngine: the OfflineEngine interface (offline/engine.py) on BigQuery
    sql.py      the join and latest-per-key plans rendered as BigQuery SQL (pure text)
    join.py     a join run as jobs (upload, query, fetch, reorder, cast), and its dry run
    jobs.py     the client, job configurations, expiring temporary tables, Arrow in and out
    schema.py   apply's schema check of BigQuery sources (BigQuery's type rule)

Importing this package does not import google-cloud-bigquery; using the engine does.
"""

from featurestore.offline.bigquery.engine import BigQueryEngine

__all__ = ["BigQueryEngine"]
