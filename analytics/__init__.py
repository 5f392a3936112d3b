"""ClickHouse: the one door to it (`ClickHouse`), the schema as numbered migrations, the
activity-log writer, the tenant-scoped queries and the API's async facade over them."""
