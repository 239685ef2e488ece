"""Sharing folders (models, datasets, results) through S3-compatible object storage.

A folder is mirrored under an ``s3://bucket/prefix`` together with ``MANIFEST.json``, which
records each file's SHA-256 and size. Only changed files move: ``push`` uploads the files
whose checksum differs from the remote manifest's, ``pull`` downloads those whose local copy
differs. A download goes to a hidden temporary file in the target folder, is checked against
the manifest's SHA-256 and only then renamed into place, so an interrupted or corrupt transfer
never leaves a file that looks complete.

Credentials come from boto3's standard chain (environment, ``~/.aws``, instance roles); the
endpoint of non-AWS storage (MinIO, Ceph, a local moto server) from ``endpoint_url`` or the
standard ``AWS_ENDPOINT_URL`` variable.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NnClusteringError
from .files import file_digest

MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = 1


class StorageError(NnClusteringError):
    """The bucket cannot be reached or used (bad URI, credentials, endpoint, checksum)."""


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """``s3://bucket/some/prefix`` -> S3Location; a clear error for anything else."""
        if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
            raise StorageError(f"{uri!r} is not an S3 URI; use s3://bucket/prefix (e.g. S3_URI=s3://my-bucket/nn)")
        bucket, _, prefix = uri[5:].partition("/")
        return cls(bucket, prefix.strip("/"))

    def key(self, relative: str) -> str:
        """The object key of a path relative to the synced folder."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def join(self, relative: str) -> S3Location:
        """The location of a sub-folder."""
        return S3Location(self.bucket, self.key(relative.strip("/")))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass
class SyncReport:
    """What a push or pull moved."""

    transferred: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{len(self.transferred)} file(s) transferred, {len(self.unchanged)} unchanged"


def s3_client(endpoint_url: str | None = None):
    """A boto3 S3 client with the standard credential chain (``endpoint_url`` for non-AWS
    storage, else ``AWS_ENDPOINT_URL`` if set)."""
    import boto3
    from botocore.config import Config

    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    session = boto3.session.Session()  # a fresh session: the credential chain is read now, not cached
    try:
        return session.client("s3", endpoint_url=endpoint_url, region_name=region,
                              config=Config(retries={"max_attempts": 3, "mode": "standard"}))
    except ValueError as exc:  # botocore: "Invalid endpoint: ..."
        raise StorageError(f"{exc}; give S3_ENDPOINT (--endpoint-url) as http(s)://host[:port], "
                           "e.g. http://minio:9000") from None


@contextlib.contextmanager
def _s3_errors(location: S3Location, endpoint: str | None):
    """Turn botocore's exceptions into one-line errors naming the problem and the fix."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = f"{location}" + (f" at {endpoint}" if endpoint else "")
    try:
        yield
    except NoCredentialsError:
        raise StorageError(
            f"no S3 credentials found for {where}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE)"
        ) from None
    except EndpointConnectionError as exc:
        raise StorageError(f"cannot reach the S3 endpoint for {where} ({exc}); check S3_ENDPOINT") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId", "AccessDenied",
                    "403", "ExpiredToken"):
            raise StorageError(
                f"S3 refused the credentials for {where} ({code}); check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's permissions"
            ) from None
        if code in ("NoSuchBucket", "404"):
            raise StorageError(f"bucket {location.bucket!r} does not exist at {where}; create it or fix S3_URI") from None
        raise StorageError(f"S3 request for {where} failed: {code or exc}") from None


def local_manifest(folder: Path) -> dict[str, dict]:
    """SHA-256 and size of every file under ``folder`` (hidden temporary files left out)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in Path(relative).parts) or relative == MANIFEST:
            continue
        out[relative] = {"sha256": file_digest(path, "sha256"), "size": path.stat().st_size}
    return out


def remote_manifest(client, location: S3Location, corrupt_ok: bool = False,
                    log: Callable[[str], None] = print) -> dict[str, dict]:
    """The manifest stored at ``location`` (empty if there is none yet). A corrupt one is a
    :class:`StorageError`, or, with ``corrupt_ok`` (a push, which rewrites it), empty with a
    line saying every file will be uploaded again."""
    try:
        body = client.get_object(Bucket=location.bucket, Key=location.key(MANIFEST))["Body"].read()
    except client.exceptions.NoSuchKey:
        return {}
    try:
        data = json.loads(body)
        files = dict(data["files"])
        if not all(isinstance(m, dict) and isinstance(m.get("sha256"), str) and isinstance(m.get("size"), int)
                   for m in files.values()):
            raise ValueError("an entry lacks its sha256 or size")
        return files
    except (ValueError, KeyError, TypeError) as exc:
        if corrupt_ok:
            log(f"{location}/{MANIFEST} is corrupt ({exc}); uploading every file and writing it anew")
            return {}
        raise StorageError(f"{location}/{MANIFEST} is corrupt ({exc}); push the folder again to rewrite it") from None


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled, leave=False)


def push(folder: str | Path, uri: str, endpoint_url: str | None = None, client=None, progress: bool = True,
         log: Callable[[str], None] = print) -> SyncReport:
    """Upload the files of ``folder`` that differ from the remote manifest, then the manifest."""
    folder, location = Path(folder), S3Location.parse(uri)
    if not folder.is_dir():
        raise StorageError(f"{folder} does not exist; nothing to push (build it first, e.g. `make models`)")
    client = client or s3_client(endpoint_url)
    report = SyncReport()
    with _s3_errors(location, endpoint_url):
        remote = remote_manifest(client, location, corrupt_ok=True, log=log)
        local = local_manifest(folder)
        changed = [r for r, meta in local.items() if remote.get(r, {}).get("sha256") != meta["sha256"]]
        report.unchanged = [r for r in local if r not in changed]
        with _progress(sum(local[r]["size"] for r in changed), f"push {folder}", progress) as bar:
            for relative in changed:
                client.upload_file(str(folder / relative), location.bucket, location.key(relative),
                                   ExtraArgs={"Metadata": {"sha256": local[relative]["sha256"]}},
                                   Callback=bar.update)
                report.transferred.append(relative)
        manifest = {"format": MANIFEST_FORMAT, "files": {**remote, **local}}
        client.put_object(Bucket=location.bucket, Key=location.key(MANIFEST),
                          Body=json.dumps(manifest, indent=1, sort_keys=True).encode())
    log(f"push {folder} -> {location}: {report}")
    return report


def _download_verified(client, location: S3Location, relative: str, target: Path, sha256: str, bar) -> None:
    """Download one object to a temporary file, check its SHA-256, then rename it into place."""
    from botocore.exceptions import ClientError

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        try:
            client.download_file(location.bucket, location.key(relative), str(partial), Callback=bar.update)
        except ClientError:
            raise  # credentials, missing objects: reported by _s3_errors
        except Exception as exc:  # a dropped connection (after retries), a full disk, ...
            cause = getattr(exc, "last_exception", None) or exc  # s3transfer's retries keep the cause
            raise StorageError(
                f"download of {location}/{relative} was interrupted ({type(cause).__name__}: {cause}); "
                f"{target} was left as it was: run the pull again"
            ) from exc
        actual = file_digest(partial, "sha256")
        if actual != sha256:
            raise StorageError(
                f"{location}/{relative} does not match its recorded SHA-256 ({actual[:12]}... != "
                f"{sha256[:12]}...); the remote copy is corrupt or was changed without its manifest: push it again"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def pull(uri: str, folder: str | Path, endpoint_url: str | None = None, client=None, progress: bool = True,
         log: Callable[[str], None] = print) -> SyncReport:
    """Download the files of the remote manifest whose local copy is missing or differs; every
    file is checked against its recorded SHA-256 before it replaces anything."""
    folder, location = Path(folder), S3Location.parse(uri)
    if folder.exists() and not folder.is_dir():
        raise StorageError(f"{folder} is a file, not a folder; pull into a folder (it is created if missing)")
    client = client or s3_client(endpoint_url)
    report = SyncReport()
    failed: dict[str, str] = {}
    with _s3_errors(location, endpoint_url):
        remote = remote_manifest(client, location)
        if not remote:
            raise StorageError(f"nothing at {location} (no {MANIFEST}); push the folder there first")
        changed = []
        for relative, meta in remote.items():
            path = folder / relative
            if path.is_file() and path.stat().st_size == meta["size"] and file_digest(path, "sha256") == meta["sha256"]:
                report.unchanged.append(relative)
            else:
                changed.append(relative)
        with _progress(sum(remote[r]["size"] for r in changed), f"pull {location}", progress) as bar:
            for relative in changed:
                try:
                    _download_verified(client, location, relative, folder / relative, remote[relative]["sha256"], bar)
                except StorageError as exc:  # one bad object: keep going, report it at the end
                    failed[relative] = str(exc)
                    continue
                report.transferred.append(relative)
    log(f"pull {location} -> {folder}: {report}")
    if failed:
        first = next(iter(failed.values()))
        raise StorageError(
            f"{len(failed)} of {len(changed)} file(s) failed and were left as they were "
            f"({', '.join(failed)}); the other {len(report.transferred)} were pulled. First problem: {first}"
        )
    return report
