"""The one Celery app. Configuration lives in Django settings under the CELERY_ namespace.

Run the vision worker with the threads pool, so one process holds one engine and several tasks
feed its batching scheduler:

    celery -A docplatform worker -P threads -Q vision -c 4
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docplatform.settings")

app = Celery("docplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
