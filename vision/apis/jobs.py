"""Jobs: submit (202 + status URL), list, status with queue position and progress, cancel."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from accounts.scope import scope_of
from vision.apis.common import Pagination, paginated_response, uploaded_file
from vision.models import Job, JobStatus, JobTask
from vision.selectors import job_get, job_list, job_queue_position
from vision.services.jobs import job_cancel, job_submit


class JobOutputSerializer(serializers.Serializer):
    """A job as clients see it. `result` and `error` are null until the job finished."""

    id = serializers.IntegerField()
    task = serializers.CharField()
    status = serializers.CharField()
    document_id = serializers.IntegerField(allow_null=True)
    batch_id = serializers.IntegerField(allow_null=True)
    options = serializers.JSONField()
    status_url = serializers.SerializerMethodField()
    queue_position = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    attempts = serializers.IntegerField()
    result = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    timings = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_status_url(self, job: Job) -> str:
        return reverse("job-detail", args=[job.pk], request=self.context.get("request"))

    def get_queue_position(self, job: Job) -> int | None:
        return job_queue_position(job=job)

    def get_progress(self, job: Job) -> dict:
        done = job.status == JobStatus.SUCCEEDED
        return {
            "tokens": job.progress_tokens,
            "max_tokens": job.max_tokens,
            "fraction": 1.0 if done else round(min(job.progress_tokens / job.max_tokens, 0.99), 3),
        }

    def get_result(self, job: Job) -> dict | None:
        if job.status != JobStatus.SUCCEEDED:
            return None
        return {"text": job.result_text, "data": job.result, "finish_reason": job.finish_reason}

    def get_error(self, job: Job) -> dict | None:
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            return None
        return {"code": job.error_code, "message": job.error}

    def get_usage(self, job: Job) -> dict:
        return {
            "prompt_tokens": job.prompt_tokens,
            "completion_tokens": job.completion_tokens,
            "total_tokens": job.prompt_tokens + job.completion_tokens,
            "image_tokens": job.image_tokens,
            "cached_tokens": job.cached_tokens,
        }

    def get_timings(self, job: Job) -> dict:
        """The engine's own timings (queue, vision, prefill, decode, total) plus wall-clock waits."""
        wall = {}
        if job.started_at:
            wall["wait_s"] = round((job.started_at - job.created_at).total_seconds(), 3)
        if job.started_at and job.finished_at:
            wall["run_s"] = round((job.finished_at - job.started_at).total_seconds(), 3)
        return {**(job.timings or {}), **wall}


class JobListCreateApi(APIView):
    pagination_class = Pagination  # also tells the schema the list is paginated

    @extend_schema_serializer(component_name="JobSubmitInput")
    class InputSerializer(serializers.Serializer):
        task = serializers.ChoiceField(choices=JobTask.values)
        file = serializers.FileField(required=False, allow_empty_file=True)
        document_id = serializers.IntegerField(required=False, min_value=1)
        question = serializers.CharField(required=False, allow_blank=True, trim_whitespace=True)
        document_type = serializers.SlugField(
            required=False, help_text="for task=extract: a document type's slug"
        )
        message = serializers.CharField(required=False, allow_blank=True, trim_whitespace=True)
        max_tokens = serializers.IntegerField(required=False)
        pages = serializers.ListField(
            child=serializers.IntegerField(min_value=1), required=False, max_length=100
        )

    @extend_schema_serializer(component_name="JobListFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=JobStatus.values, required=False)

    @extend_schema(parameters=[FilterSerializer], responses=JobOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = job_list(scope=scope_of(request), **filters.validated_data)
        return paginated_response(self, request, jobs, JobOutputSerializer, context={"request": request})

    @extend_schema(request=InputSerializer, responses={202: JobOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = job_submit(
            scope=scope_of(request),
            task=data["task"],
            options={
                key: data[key]
                for key in ("question", "message", "document_type", "max_tokens", "pages")
                if key in data
            },
            upload=uploaded_file(data["file"]) if "file" in data else None,
            document_id=data.get("document_id"),
        )
        body = JobOutputSerializer(job, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["status_url"]})


class JobDetailApi(APIView):
    @extend_schema(responses=JobOutputSerializer)
    def get(self, request: Request, job_id: int) -> Response:
        job = job_get(scope=scope_of(request), job_id=job_id)
        return Response(JobOutputSerializer(job, context={"request": request}).data)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobOutputSerializer)
    def post(self, request: Request, job_id: int) -> Response:
        job = job_cancel(job=job_get(scope=scope_of(request), job_id=job_id))
        return Response(JobOutputSerializer(job, context={"request": request}).data)
