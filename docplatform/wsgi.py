"""WSGI entry point, for servers without ASGI (streaming endpoints need ASGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docplatform.settings")

application = get_wsgi_application()
