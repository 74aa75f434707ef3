"""Business logic that writes: documents.py (uploads), jobs.py (job life cycle), batches.py.

Services are keyword-only functions named `<entity>_<action>` and raise `ApplicationError`s."""
