"""The ingress web server: status page, JSON API and the health check."""
