"""The key schema as docs/architecture.md shows it: the patterns, and who writes them.

Apart from `keys` because the writers come from the service registry, which reads `keys`.
"""

from __future__ import annotations

from courseredis import keys
from courseredis.services import registry


def markdown_table() -> str:
    """The table between the `keys:` markers of docs/architecture.md; a test keeps them equal."""
    lines = [
        "| Pattern | Key | Type | TTL | Written by |",
        "|---|---|---|---|---|",
    ]
    for p in keys.PATTERNS:
        types = " or ".join(p.redis_types)
        lines.append(
            f"| {p.title} | `{p.display_template}` | {types} | {p.ttl.description} | "
            f"{', '.join(registry.writers(p))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
