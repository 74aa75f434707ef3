"""`manage.py retention [--dry-run]`

Runs retention now, as the daily `vision.retention_run` task does (vision.services.retention):
documents past their organisation's or document type's `retention_days` are deleted with their
files, except those under legal hold. `--dry-run` deletes nothing and prints what would go: per
organisation, the ids of its documents (never their names or contents). Exit code 1 when a batch
failed (the documents stay for the next run).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from vision.services.retention import retention_run


class Command(BaseCommand):
    help = "Delete documents past their retention (except those under legal hold); --dry-run lists them."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="delete nothing; print what would go")

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        report = retention_run(dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for organization_id, ids in sorted(report.deleted.items()):
            listed = " ".join(str(pk) for pk in ids)
            self.stdout.write(f"organization {organization_id}: {verb} {len(ids)} documents: {listed}")
        self.stdout.write(f"{verb} {report.total} documents in {len(report.deleted)} organisations")
        if report.failed:
            self.stderr.write(f"{len(report.failed)} documents could not be deleted (see the log)")
            raise SystemExit(1)
