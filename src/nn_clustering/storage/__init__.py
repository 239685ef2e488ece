"""Files and records: atomic writes and digests (:mod:`.files`), the analysis cache
(:mod:`.cache`), the model folder's schema (:mod:`.catalog`), result tables and figures
(:mod:`.tables`), S3 sharing (:mod:`.s3`) and provenance (:mod:`.provenance`)."""
