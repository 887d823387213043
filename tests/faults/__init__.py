"""Fault scenarios of issue 7: real RabbitMQ, a real MongoDB-protocol server, real workers."""
