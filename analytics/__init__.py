"""ClickHouse: the schema as numbered migrations, the activity-log writer, the scoped queries."""
