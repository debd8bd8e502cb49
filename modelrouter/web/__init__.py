"""The HTTP surface under the router's prefix: feedback, admin API, dashboard, metrics."""
