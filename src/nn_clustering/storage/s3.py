"""Sharing folders (models, datasets, results) through S3-compatible object storage.

A folder is mirrored under an ``s3://bucket/prefix`` together with ``MANIFEST.json``, which
records each file's SHA-256 and size. Only changed files move: ``push`` uploads the files
whose checksum differs from the remote manifest's, ``pull`` downloads those whose local copy
differs. A download is streamed to a hidden temporary file in the target folder, stopped as
soon as it passes the size the manifest records, checked against the manifest's SHA-256 and
only then renamed into place, so an interrupted, corrupt or oversized transfer never leaves a
file that looks complete.

What moves, in both directions (one rule, :mod:`.safe_paths`):

- **Names.** Every manifest key must be a safe relative path inside the folder (no ``..``,
  absolute path, empty or ``.`` segment, backslash or control character; no key where another
  needs a folder). A pull checks the whole manifest and the target's existing paths before it
  writes anything and refuses a bucket with a bad key in one line naming it; a push refuses a
  local file whose name a pull would refuse.
- **Hidden files are skipped.** A push uploads no file or folder whose name starts with ``.``
  (temporary files, ``.git``, ...) and a pull downloads no such key; each says how many it
  skipped.
- **Symlinks are skipped.** A push does not follow links (to files or folders), so nothing
  outside the folder is uploaded; it says how many it skipped. A pull never writes through a
  link inside the target: one in the way of a key is an error naming it.
- **Exclusions.** ``exclude`` names top-level entries of the folder (e.g. ``("cache",)``, the
  analysis cache, which only its own installation trusts). A push neither uploads them nor
  keeps the remote manifest's entries under them (the objects stay in the bucket, unlisted,
  so no later pull fetches them); a pull ignores manifest entries under them.

Credentials come from boto3's standard chain (environment, ``~/.aws``, instance roles); the
endpoint of non-AWS storage (MinIO, Ceph, a local moto server) from ``endpoint_url`` or the
standard ``AWS_ENDPOINT_URL`` variable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.progress import progress_bar
from ..errors import quoted
from .files import atomic_path, file_digest
from .safe_paths import (
    MANIFEST,
    KeySet,
    StorageError,
    UnsafePathError,
    check_excludes,
    check_manifest,
    is_hidden,
    path_problem,
    resolve_inside,
    under,
)

__all__ = ["MANIFEST", "MANIFEST_FORMAT", "S3Location", "StorageError", "SyncReport", "UnsafePathError",
           "local_manifest", "pull", "push", "remote_manifest", "s3_client"]

MANIFEST_FORMAT = 1
CHUNK = 1 << 20


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
    """What a push or pull moved, and what it skipped (hidden names, symlinks, exclusions)."""

    transferred: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    symlinks: list[str] = field(default_factory=list)
    special: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{len(self.transferred)} file(s) transferred, {len(self.unchanged)} unchanged"


def _names(names: Sequence[str], limit: int = 3) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(quoted(n, 60) for n in names[:limit]) + more


def _log_skipped(report: SyncReport, what: str, log: Callable[[str], None], exclude: Sequence[str] = ()) -> None:
    """One line per kind of name that was left out."""
    if report.hidden:
        log(f"{what}: skipped {len(report.hidden)} hidden name(s) (starting with '.'; neither push nor pull "
            f"moves them): {_names(report.hidden)}")
    if report.symlinks:
        log(f"{what}: skipped {len(report.symlinks)} symlink(s) (a push does not follow links; copy the file "
            f"in to share it): {_names(report.symlinks)}")
    if report.special:
        log(f"{what}: skipped {len(report.special)} entry(ies) that are not regular files: {_names(report.special)}")
    if report.excluded:
        log(f"{what}: left out {len(report.excluded)} name(s) under the excluded {_names(exclude)}")


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


def local_manifest(folder: Path, exclude: Sequence[str] = (), report: SyncReport | None = None) -> dict[str, dict]:
    """SHA-256 and size of every regular file under ``folder``, links not followed.

    Hidden names, symlinks, other non-regular files and the names under ``exclude`` are left
    out (and listed in ``report`` if given); so is a top-level ``MANIFEST.json``. A file whose
    name a pull would refuse, or that would clash with another one, is a :class:`StorageError`.
    """
    report = report if report is not None else SyncReport()
    out: dict[str, dict] = {}
    taken = KeySet()

    def walk(path: Path, prefix: str) -> None:
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                relative = f"{prefix}{entry.name}"
                if under(relative, exclude):
                    report.excluded.append(relative)
                elif entry.name.startswith("."):
                    report.hidden.append(relative)
                elif entry.is_symlink():
                    report.symlinks.append(relative)
                elif entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), f"{relative}/")
                elif not entry.is_file(follow_symlinks=False):
                    report.special.append(relative)
                elif relative != MANIFEST:
                    problem = path_problem(relative) or taken.add(relative)
                    if problem is not None:
                        raise StorageError(f"cannot push {folder}/{quoted(relative)} ({problem}): a pull would "
                                           "refuse its name; rename it and push again")
                    st = os.stat(entry.path, follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):  # replaced while walking
                        report.special.append(relative)
                        continue
                    out[relative] = {"sha256": file_digest(entry.path, "sha256"), "size": st.st_size}

    walk(folder, "")
    return out


class _Pairs(dict):
    """A JSON object that also keeps its raw ``(key, value)`` pairs (duplicates included)."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.pairs = pairs


def parse_manifest(body: bytes, where: str) -> dict[str, dict]:
    """The files of a manifest's bytes, checked as a whole (:func:`.safe_paths.check_manifest`):
    an :class:`UnsafePathError` for a bad key, a ValueError/KeyError/TypeError/RecursionError if
    corrupt."""
    data = json.loads(body, object_pairs_hook=_Pairs)
    files = data["files"]
    if not isinstance(files, _Pairs):
        raise ValueError("its 'files' is not an object")
    return check_manifest(files.pairs, where)


def remote_manifest(client, location: S3Location, corrupt_ok: bool = False,
                    log: Callable[[str], None] = print) -> dict[str, dict]:
    """The manifest stored at ``location`` (empty if there is none yet), every key checked.

    A corrupt one, or one with an unsafe key, is a :class:`StorageError`, or, with
    ``corrupt_ok`` (a push, which rewrites it), empty with a line saying every file will be
    uploaded again."""
    where = f"{location}/{MANIFEST}"
    try:
        body = client.get_object(Bucket=location.bucket, Key=location.key(MANIFEST))["Body"].read()
    except client.exceptions.NoSuchKey:
        return {}
    try:
        return parse_manifest(body, where)
    except UnsafePathError as exc:
        if corrupt_ok:
            log(f"{where} lists the unsafe key {quoted(exc.name)} ({exc.problem}); uploading every file and "
                "writing it anew")
            return {}
        raise
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        if corrupt_ok:
            log(f"{where} is corrupt ({quoted(str(exc), 200)[1:-1]}); uploading every file and writing it anew")
            return {}
        raise StorageError(f"{where} is corrupt ({quoted(str(exc), 200)[1:-1]}); push the folder again to "
                           "rewrite it") from None


def _merge(remote: dict[str, dict], local: dict[str, dict], exclude: Sequence[str]) -> dict[str, dict]:
    """The new manifest: every local file, and the remote entries that are not hidden, not
    excluded and do not clash with a local file (those a push drops)."""
    taken = KeySet()
    for name in local:
        taken.add(name)
    merged = dict(local)
    for name, meta in remote.items():
        if name in local or is_hidden(name) or under(name, exclude):
            continue
        if taken.add(name) is None:
            merged[name] = meta
    return dict(sorted(merged.items()))


def push(folder: str | Path, uri: str, endpoint_url: str | None = None, client=None, progress: bool = True,
         log: Callable[[str], None] = print, exclude: Sequence[str] = ()) -> SyncReport:
    """Upload the files of ``folder`` that differ from the remote manifest, then the manifest.

    Hidden names and symlinks are skipped, and so are the top-level names in ``exclude``,
    whose entries are also dropped from the remote manifest (see the module docstring)."""
    folder, location = Path(folder), S3Location.parse(uri)
    exclude = check_excludes(exclude)
    if not folder.is_dir():
        raise StorageError(f"{folder} does not exist; nothing to push (build it first, e.g. `make models`)")
    report = SyncReport()
    local = local_manifest(folder, exclude, report)
    _log_skipped(report, f"push {folder}", log, exclude)
    client = client or s3_client(endpoint_url)
    with _s3_errors(location, endpoint_url):
        remote = remote_manifest(client, location, corrupt_ok=True, log=log)
        changed = [r for r, meta in local.items() if remote.get(r, {}).get("sha256") != meta["sha256"]]
        report.unchanged = [r for r in local if r not in changed]
        with progress_bar(total=sum(local[r]["size"] for r in changed), desc=f"push {folder}", unit="B",
                          unit_scale=True, enabled=progress) as bar:
            for relative in changed:
                client.upload_file(str(folder / relative), location.bucket, location.key(relative),
                                   ExtraArgs={"Metadata": {"sha256": local[relative]["sha256"]}},
                                   Callback=bar.update)
                report.transferred.append(relative)
        manifest = {"format": MANIFEST_FORMAT, "files": _merge(remote, local, exclude)}
        client.put_object(Bucket=location.bucket, Key=location.key(MANIFEST),
                          Body=json.dumps(manifest, indent=1, sort_keys=True).encode())
    log(f"push {folder} -> {location}: {report}")
    return report


def _stream(client, location: S3Location, relative: str, tmp: Path, size: int, bar) -> str:
    """Write the object of ``relative`` to ``tmp``, never more than ``size`` bytes; its SHA-256."""
    def too_big(length: int) -> StorageError:
        return StorageError(
            f"{location}/{relative} is larger than the {size} bytes its manifest records ({length} bytes or "
            "more; stopped there); the remote copy is corrupt or was changed without its manifest: push it again"
        )

    response = client.get_object(Bucket=location.bucket, Key=location.key(relative))
    digest, written = hashlib.sha256(), 0
    with contextlib.closing(response["Body"]) as body, open(tmp, "wb") as out:
        if int(response.get("ContentLength") or 0) > size:
            raise too_big(int(response["ContentLength"]))
        for chunk in body.iter_chunks(CHUNK):
            written += len(chunk)
            if written > size:
                raise too_big(written)
            out.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _download_verified(client, location: S3Location, relative: str, folder: Path, meta: dict, bar) -> None:
    """Download one object to a temporary file (at most its recorded size), check its SHA-256,
    then rename it into place, after checking again that no link is in the way."""
    from botocore.exceptions import ClientError

    target = resolve_inside(folder, relative)
    try:
        with atomic_path(target) as tmp:
            actual = _stream(client, location, relative, tmp, meta["size"], bar)
            if actual != meta["sha256"]:
                raise StorageError(
                    f"{location}/{relative} does not match its recorded SHA-256 ({actual[:12]}... != "
                    f"{meta['sha256'][:12]}...); the remote copy is corrupt or was changed without its manifest: "
                    "push it again"
                )
            resolve_inside(folder, relative)
    except StorageError:
        raise
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404"):
            raise StorageError(f"{location}/{relative} is listed in its manifest but missing from the bucket; "
                               "push the folder again") from None
        raise  # credentials, buckets: reported by _s3_errors
    except Exception as exc:  # a dropped connection (after retries), a full disk, ...
        cause = getattr(exc, "last_exception", None) or exc  # botocore's retries keep the cause
        raise StorageError(
            f"download of {location}/{relative} was interrupted ({type(cause).__name__}: {cause}); "
            f"{target} was left as it was: run the pull again"
        ) from exc


def pull(uri: str, folder: str | Path, endpoint_url: str | None = None, client=None, progress: bool = True,
         log: Callable[[str], None] = print, exclude: Sequence[str] = ()) -> SyncReport:
    """Download the files of the remote manifest whose local copy is missing or differs.

    The whole manifest and the target's existing paths are checked before anything is
    written; every file is checked against its recorded size and SHA-256 before it replaces
    anything. Hidden keys and those under ``exclude`` are skipped (see the module docstring)."""
    folder, location = Path(folder), S3Location.parse(uri)
    exclude = check_excludes(exclude)
    if folder.exists() and not folder.is_dir():
        raise StorageError(f"{folder} is a file, not a folder; pull into a folder (it is created if missing)")
    client = client or s3_client(endpoint_url)
    report = SyncReport()
    failed: dict[str, str] = {}
    with _s3_errors(location, endpoint_url):
        remote = remote_manifest(client, location)
        if not remote:
            raise StorageError(f"nothing at {location} (no {MANIFEST}); push the folder there first")
        wanted = {}
        for relative, meta in remote.items():
            if under(relative, exclude):
                report.excluded.append(relative)
            elif is_hidden(relative):
                report.hidden.append(relative)
            else:
                resolve_inside(folder, relative)  # no link or file in the way: checked before any write
                wanted[relative] = meta
        _log_skipped(report, f"pull {location}", log, exclude)
        changed = []
        for relative, meta in wanted.items():
            path = folder / relative
            if path.is_file() and path.stat().st_size == meta["size"] and file_digest(path, "sha256") == meta["sha256"]:
                report.unchanged.append(relative)
            else:
                changed.append(relative)
        with progress_bar(total=sum(wanted[r]["size"] for r in changed), desc=f"pull {location}", unit="B",
                          unit_scale=True, enabled=progress) as bar:
            for relative in changed:
                try:
                    _download_verified(client, location, relative, folder, wanted[relative], bar)
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
