"""Getting events into Kafka: the gateway producer, the HTTP body parser, the publisher."""
