"""The hub's side of the cloud upload: one clip to one SAS URL (blob_upload). The outbox that drives it lives in
hub/uploader.py (a later change); nothing here imports cloud/."""

from .blob_upload import (
    DEFAULT_BLOCK_SIZE,
    BlobAlreadyCommitted,
    SasExpired,
    TokenBucket,
    UploadError,
    UploadFailed,
    UploadJournal,
    UploadResult,
    file_md5,
    md5_b64,
    upload_file,
)

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "BlobAlreadyCommitted",
    "SasExpired",
    "TokenBucket",
    "UploadError",
    "UploadFailed",
    "UploadJournal",
    "UploadResult",
    "file_md5",
    "md5_b64",
    "upload_file",
]
