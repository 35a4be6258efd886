"""FastAPI application: demo endpoints, compliance API."""
