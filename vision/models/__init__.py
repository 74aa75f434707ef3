"""Vision models, one module per subdomain: documents.py (Document), jobs.py (Job, Batch),
conversations.py (Conversation, Message). Re-exported here for Django and for imports."""
