"""Batches: many files and one task → one job each; progress; export as CSV or JSON."""

import csv
import io
import json

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import renderers, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from accounts.scope import scope_of
from vision.apis.common import Pagination, paginated_response, uploaded_file
from vision.apis.jobs import JobOutputSerializer
from vision.models import Batch, ExtractionEventAction, JobTask
from vision.selectors import batch_counts, batch_get, batch_jobs, batch_list
from vision.services.audit import audit_record
from vision.services.batches import batch_submit

EXPORT_COLUMNS = [
    "job_id",
    "document_id",
    "file_name",
    "task",
    "status",
    "result",
    "document_type",
    "extraction_id",
    "extraction_status",
    "fields",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "total_s",
]


class BatchOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task = serializers.CharField()
    options = serializers.JSONField()
    status = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    status_url = serializers.SerializerMethodField()
    export_urls = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def _counts(self, batch: Batch):
        if not hasattr(batch, "_counts"):
            batch._counts = batch_counts(batch=batch)
        return batch._counts

    def get_status(self, batch: Batch) -> str:
        return self._counts(batch).status

    def get_progress(self, batch: Batch) -> dict:
        counts = self._counts(batch)
        return {
            "total": counts.total,
            "finished": counts.finished,
            "queued": counts.queued,
            "running": counts.running,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "cancelled": counts.cancelled,
            "fraction": round(counts.finished / counts.total, 3) if counts.total else 1.0,
        }

    def get_status_url(self, batch: Batch) -> str:
        return reverse("batch-detail", args=[batch.pk], request=self.context.get("request"))

    def get_export_urls(self, batch: Batch) -> dict:
        url = reverse("batch-export", args=[batch.pk], request=self.context.get("request"))
        return {"csv": f"{url}?format=csv", "json": f"{url}?format=json"}


class BatchListCreateApi(APIView):
    pagination_class = Pagination  # also tells the schema the list is paginated
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="BatchSubmitInput")
    class InputSerializer(serializers.Serializer):
        task = serializers.ChoiceField(choices=JobTask.values)
        files = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False)
        question = serializers.CharField(required=False, allow_blank=True)
        document_type = serializers.SlugField(
            required=False, help_text="for task=extract: a document type's slug"
        )
        message = serializers.CharField(required=False, allow_blank=True)
        max_tokens = serializers.IntegerField(required=False)

    @extend_schema(responses=BatchOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            self,
            request,
            batch_list(scope=scope_of(request)),
            BatchOutputSerializer,
            context={"request": request},
        )

    @extend_schema(request=InputSerializer, responses={202: BatchOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        batch = batch_submit(
            scope=scope_of(request),
            task=data["task"],
            options={
                key: data[key]
                for key in ("question", "message", "document_type", "max_tokens")
                if key in data
            },
            files=[uploaded_file(file) for file in data["files"]],
        )
        body = BatchOutputSerializer(batch, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["status_url"]})


class BatchDetailApi(APIView):
    @extend_schema_serializer(component_name="BatchDetail")
    class OutputSerializer(BatchOutputSerializer):
        jobs = serializers.SerializerMethodField()

        def get_jobs(self, batch: Batch) -> list[dict]:
            return JobOutputSerializer(batch_jobs(batch=batch), many=True, context=self.context).data

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, batch_id: int) -> Response:
        batch = batch_get(scope=scope_of(request), batch_id=batch_id)
        return Response(self.OutputSerializer(batch, context={"request": request}).data)


class CSVRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if isinstance(data, dict) and "rows" not in data:  # an error body
            data = {"rows": [{"error": data.get("detail", "")}]}
        rows = data["rows"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows({key: _csv_safe(value) for key, value in row.items()} for row in rows)
        return buffer.getvalue().encode(self.charset)


def _csv_safe(value):
    # Model output lands in spreadsheets: a cell starting with = + - @ would run as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _extraction_columns(job) -> dict:
    """The reviewed state of a job's extraction (invoice or document type): its current fields,
    corrections included, and whether a reviewer approved them."""
    extraction = getattr(job, "extraction", None)
    if extraction is None:
        return {"document_type": "", "extraction_id": None, "extraction_status": "", "fields": ""}
    version = extraction.document_type_version
    return {
        "document_type": f"{extraction.kind} v{version.number}" if version else extraction.kind,
        "extraction_id": extraction.pk,
        "extraction_status": extraction.status,
        "fields": json.dumps(extraction.fields, ensure_ascii=False, sort_keys=True),
    }


class BatchExportApi(APIView):
    """`?format=csv` or `?format=json` (DRF's format override picks the renderer)."""

    renderer_classes = [renderers.JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["csv", "json"])],
        responses={(200, "application/json"): dict, (200, "text/csv"): str},
    )
    def get(self, request: Request, batch_id: int) -> Response:
        scope = scope_of(request)
        batch = batch_get(scope=scope, batch_id=batch_id)
        audit_record(
            scope=scope,
            action=ExtractionEventAction.EXPORTED,
            detail={"batch": batch.pk, "format": getattr(request.accepted_renderer, "format", "")},
        )
        rows = [
            {
                "job_id": job.pk,
                "document_id": job.document_id,
                "file_name": job.document.original_name if job.document else "",
                "task": job.task,
                "status": job.status,
                "result": job.result_text,
                **_extraction_columns(job),
                "error": job.error,
                "prompt_tokens": job.prompt_tokens,
                "completion_tokens": job.completion_tokens,
                "total_s": (job.timings or {}).get("total_s"),
            }
            for job in batch_jobs(batch=batch)
        ]
        extension = request.accepted_renderer.format
        if extension == "json":
            body = {"batch": {"id": batch.pk, "task": batch.task, "status": batch_counts(batch=batch).status}}
            body["rows"] = rows
        else:
            body = {"rows": rows}
        return Response(
            body, headers={"Content-Disposition": f'attachment; filename="batch-{batch.pk}.{extension}"'}
        )
