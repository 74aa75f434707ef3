from django.apps import AppConfig


class VisionConfig(AppConfig):
    name = "vision"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # All signal wiring of the app happens here. The worker hooks only fire inside a Celery
        # worker; connecting them in the web process costs nothing and imports no torch.
        from vision import worker
        from vision.runners import watchdog

        worker.connect_signals()
        watchdog.connect_signals()
