"""The reward service (DESIGN §5): FastAPI app factory, routes, cache, jobs, metrics."""
