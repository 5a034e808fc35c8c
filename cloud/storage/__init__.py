"""Cloud storage behind small interfaces: blobs (clips, snapshots), the job queue, and media probing.

Import from the submodules (``cloud.storage.blob`` / ``.queue`` / ``.probe``); the names below are re-exported
for convenience. Nothing here imports the API or the worker.
"""

from .blob import (
    API_VERSION,
    AzureBlobStore,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    StorageError,
    StorageUnavailable,
)
from .probe import MediaError, MediaInfo, ProbeStats, probe_blob, probe_file
from .queue import MAX_DEQUEUE_COUNT, AzureJobQueue, JobQueue, MessageLost, QueueMessage

__all__ = [
    "API_VERSION",
    "MAX_DEQUEUE_COUNT",
    "AzureBlobStore",
    "AzureJobQueue",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "JobQueue",
    "MediaError",
    "MediaInfo",
    "MessageLost",
    "ProbeStats",
    "QueueMessage",
    "StorageError",
    "StorageUnavailable",
    "probe_blob",
    "probe_file",
]
