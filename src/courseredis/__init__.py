"""The Redis layer of the course platform: key schema, connection, patterns and operations."""
