"""Vision models (Document, Job, ...) arrive with the documents-and-jobs work."""
