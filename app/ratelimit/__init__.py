"""Rate limiting: the sliding-window limiter, its stores, policies and FastAPI integration."""
