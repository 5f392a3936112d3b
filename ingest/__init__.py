"""Getting events into Kafka: POST /v1/events without the HTTP (`EventIngest`), the body
parser, the durable journal, the publishers and the gateway producer."""
