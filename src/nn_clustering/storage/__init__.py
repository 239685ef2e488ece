"""Files and records: atomic writes and digests (:mod:`.files`), names from outside turned into
paths (:mod:`.safe_paths`), the analysis cache (:mod:`.cache`), result tables (:mod:`.tables`),
S3 sharing (:mod:`.s3`) and provenance (:mod:`.provenance`)."""
