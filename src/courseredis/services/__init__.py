"""The course platform services (gateway, auth, courses, enrollments) on FastAPI."""
