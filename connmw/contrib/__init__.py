"""Framework integrations (Flask, Django, Starlette/FastAPI); each imports its framework lazily."""
