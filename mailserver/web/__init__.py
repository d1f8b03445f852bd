"""The web service: the account page, client autoconfiguration, /healthz and /metrics."""
