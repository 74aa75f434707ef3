"""Vision models, one module per subdomain: documents.py (Document), jobs.py (Job, Batch),
conversations.py (Conversation, Message), extractions.py, document_types.py (DocumentType and
its versions). Re-exported here for Django and for imports."""

from vision.models.conversations import Conversation, Message, MessageRole  # noqa: E402,F401
from vision.models.document_types import DocumentType, DocumentTypeVersion  # noqa: E402,F401
from vision.models.documents import Document, DocumentKind, DocumentPage  # noqa: E402,F401
from vision.models.extractions import (  # noqa: E402,F401
    DOCUMENT_ACTIONS,
    Extraction,
    ExtractionEvent,
    ExtractionEventAction,
    ExtractionStatus,
)
from vision.models.jobs import FINISHED_STATUSES, Batch, Job, JobStatus, JobTask  # noqa: E402,F401
from vision.models.sharing import ShareLink  # noqa: E402,F401
