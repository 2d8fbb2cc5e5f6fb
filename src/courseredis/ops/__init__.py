"""Operations tools: keyspace audit, chaos scenarios."""
