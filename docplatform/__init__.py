"""DocPlatform project package: settings, URLs, the Celery app, ASGI/WSGI entry points.

Named `docplatform`, not `platform`: a top-level `platform` package would shadow the standard
library module that torch, celery and kombu import.
"""

from docplatform.celery import app as celery_app

__all__ = ["celery_app"]
