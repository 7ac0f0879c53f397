"""What an operator sees: Prometheus metrics and the HTTP server, the live page,
and the report built from a metrics log."""
