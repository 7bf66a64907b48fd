"""HTTP API of a rate limiter node: request/response models and FastAPI routers."""
