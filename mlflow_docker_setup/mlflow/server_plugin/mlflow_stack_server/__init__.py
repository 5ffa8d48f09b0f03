"""This stack's extensions of the MLflow tracking server, loaded through MLflow's entry
points (pyproject.toml), one module per role:

- ``artifact_repos``: the s3:// and file:// artifact repositories (store errors answered
  with statuses clients do not retry, uploads streamed on to S3, roots kept in the store);
- ``artifact_locations``: where the server lets artifacts go;
- ``tracking_store``: which tracking store serves a ``mysql`` or ``sqlite`` URI, and
  ``fast_sql_store``: MLflow's SQL store with faster searches and batches;
- ``nodelay``: uvicorn's HTTP protocol with TCP_NODELAY (no ~40 ms stall per request);
- ``app``: the server app (``--app-name stack`` / ``stack-shared``) and its request checks;
- ``error_answers``: what a failed request tells its client (the details go to the log);
- ``content_policy``: the Content-Security-Policy the UI runs under;
- ``ui_defaults``: the UI's defaults for a browser that has not chosen (model-training view);
- ``signin``: the brake on password guessing (the basic-auth app's authorization function);
- ``passwords``: which passwords users may choose;
- ``bootstrap``: the auth database, made once before a shared server's workers start.
"""
