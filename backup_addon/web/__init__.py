"""The ingress panel: its pages, the JSON API behind them, live events and the health check."""
