"""The ASGI side: request readers (unit id, segment), the middleware (hot path), lifespan."""
