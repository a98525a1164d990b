"""Supervisor jobs as ``GET /jobs/info`` shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

# Backup stage names in the order the v1 API reports them.
STAGE_ADDON_REPOSITORIES = "addon_repositories"
STAGE_HOME_ASSISTANT = "home_assistant"
STAGE_ADDONS = "addons"
STAGE_FOLDERS = "folders"
STAGE_SUPERVISOR_CONFIG = "supervisor_config"
STAGE_FINISHING_FILE = "finishing_file"
STAGE_COPY_ADDITIONAL_LOCATIONS = "copy_additional_locations"
STAGE_AWAIT_ADDON_RESTARTS = "await_addon_restarts"

JOB_FULL_BACKUP = "backup_manager_full_backup"
JOB_PARTIAL_BACKUP = "backup_manager_partial_backup"
JOB_IMPORT_BACKUP = "backup_manager_import_backup"


def utcnow_iso() -> str:
    """Current time the way the Supervisor writes it (``...+00:00``)."""
    return datetime.now(UTC).isoformat()


@dataclass(slots=True)
class JobError:
    """One entry of a job's ``errors`` list."""

    type: str
    message: str
    stage: str | None
    error_key: str | None = None
    extra_fields: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """API shape."""
        return {
            "type": self.type,
            "message": self.message,
            "stage": self.stage,
            "error_key": self.error_key,
            "extra_fields": self.extra_fields,
        }


@dataclass(slots=True)
class SimJob:
    """A job and its children; ``done`` is None before start, False running, True finished."""

    name: str
    reference: str | None = None
    uuid: str = field(default_factory=lambda: uuid4().hex)
    progress: float = 0
    stage: str | None = None
    done: bool | None = None
    errors: list[JobError] = field(default_factory=list)
    created: str = field(default_factory=utcnow_iso)
    extra: dict[str, Any] | None = None
    child_jobs: list[SimJob] = field(default_factory=list)

    def start(self) -> None:
        """Mark running."""
        self.done = False

    def finish(self) -> None:
        """Mark done; backup jobs jump to 100 % even when they carry errors."""
        self.progress = 100
        self.done = True

    def child(self, name: str, reference: str | None = None) -> SimJob:
        """Start a child job (children are listed oldest first)."""
        job = SimJob(name=name, reference=reference)
        job.start()
        self.child_jobs.append(job)
        return job

    def capture_error(self, err_type: str, message: str) -> None:
        """Record an error at the current stage."""
        self.errors.append(JobError(type=err_type, message=message, stage=self.stage))

    def as_dict(self) -> dict[str, Any]:
        """API shape (``parent_id`` is not part of the tree)."""
        return {
            "name": self.name,
            "reference": self.reference,
            "uuid": self.uuid,
            "progress": self.progress,
            "stage": self.stage,
            "done": self.done,
            "errors": [e.as_dict() for e in self.errors],
            "created": self.created,
            "extra": self.extra,
            "child_jobs": [c.as_dict() for c in self.child_jobs],
        }


@dataclass(slots=True)
class JobRegistry:
    """Root jobs; backup jobs stay listed until the Supervisor restarts (cleanup=False)."""

    roots: list[SimJob] = field(default_factory=list)

    def add(self, job: SimJob) -> SimJob:
        """Register a root job."""
        self.roots.append(job)
        return job

    def get(self, uuid: str) -> SimJob | None:
        """Root job by uuid."""
        return next((j for j in self.roots if j.uuid == uuid), None)

    def info(self) -> dict[str, Any]:
        """``GET /jobs/info`` data: root jobs newest first."""
        return {
            "ignore_conditions": [],
            "jobs": [j.as_dict() for j in reversed(self.roots)],
        }
