"""Running the service: metrics, access logs, the dashboard."""
