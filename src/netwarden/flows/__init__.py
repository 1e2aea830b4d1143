"""Flow visibility: collect and ingest flow records, store them, query them, alert on them.

    importers/  read a flow-log format (Hubble, Calico flow and DNS logs, AWS VPC) into Arrow
                tables with `schema.FLOW_SCHEMA`, counting and locating every rejected record
    enrich      endpoint identity for each record from the inventory valid at its time
    store       the `FlowStore` interface and `open_store` (DuckDB file, ClickHouse/chDB)
    duckdb_*    the embedded backend: the store, its tables and migrations (`duckdb_schema`),
                `FlowStore.fold` folding records into distinct key rows (`duckdb_fold`)
    clickhouse_*  the ClickHouse backend: the store, its DDL and migrations, the clients
    store_common  what both backends share: match tables, Parquet export/import
    filter      the safe query language, compiled to parametrised SQL for each backend
    collect*    records from netwarden's own dataplane: flow-log rules read by ulogd2 in the
                node namespace, joined with conntrack accounting
    alerts*     flows to or from threat-feed addresses (`alerts_ip`), DNS lookups of listed
                domains and flows to the addresses they returned (`alerts_dns`), one alert per
                feed, indicator and pair (`alerts_groups`)

Adding a format: one module in `importers/` and one row in `importers.IMPORTERS`. Adding a
backend: one module implementing `store.FlowStore` and one row in `store._BACKENDS`.
"""
