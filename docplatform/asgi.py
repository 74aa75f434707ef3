"""ASGI entry point: `uvicorn docplatform.asgi:application`. Never imports torch."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docplatform.settings")

application = get_asgi_application()
