"""The post-deploy smoke suite (pytest + testinfra)."""
