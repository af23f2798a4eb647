"""The app's routes, one module per concern: the page and API docs, the server's facts, the jobs."""

from landseg.serve.routes import jobs, pages, server

ROUTERS = [pages.router, server.router, jobs.router]
__all__ = ["ROUTERS"]
