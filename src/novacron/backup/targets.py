"""Where backup objects live: one small key/value interface with a local-filesystem, S3, Azure Blob
and Google Cloud Storage implementation.

Keys are ``/``-separated relative paths (``chunks/<tenant>/ab/<id>``). Every object is written
whole: a reader never sees half an object (local: write to a temporary name and rename; the object
stores make a PUT atomic themselves). The chunk store above never rewrites an object with different
content, except its small mutable records (leases, GC state), so eventual overwrite visibility is
harmless.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_KEY = re.compile(r"^[A-Za-z0-9._=-]+(/[A-Za-z0-9._=-]+)*$")


class ObjectNotFound(KeyError):
    """The key names no object in the target."""


def check_key(key: str) -> str:
    """The key itself when it is a safe relative path; raises ValueError otherwise."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key


class Target(abc.ABC):
    """An object store holding a backup repository."""

    #: a short name for reports ("local", "s3", "azure", "gcs")
    kind: str = "target"

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any object there."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound."""

    @abc.abstractmethod
    def has(self, key: str) -> bool:
        """Whether an object exists under ``key``."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix`` (a plain string prefix, in no particular order)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abc.abstractmethod
    def scan(self, prefix: str = "") -> Iterator[tuple[str, float, int]]:
        """(key, last-modified epoch seconds, size) of every object under ``prefix``."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only when the key is free; True when this call created it.

        The default is check-then-put, which two concurrent writers can both win; targets with a
        conditional write override it (used for the few objects that must never be replaced, such
        as a tenant's wrapped data key)."""
        if self.has(key):
            return False
        self.put(key, data)
        return True

    def describe(self) -> str:
        """Where the objects live, for reports (never a credential)."""
        return self.kind


class LocalTarget(Target):
    """A directory tree on a local or network filesystem."""

    kind = "local"

    def __init__(self, root: str | os.PathLike[str], fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write_tmp(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def put(self, key: str, data: bytes) -> None:
        """Store the object atomically: a temporary file renamed over the key."""
        path = self._path(key)
        os.replace(self._write_tmp(path, data), path)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only when the key is free (a hard link, which is atomic)."""
        path = self._path(key)
        tmp = self._write_tmp(path, data)
        try:
            os.link(tmp, path)  # atomic and refuses an existing name
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def get(self, key: str) -> bytes:
        """The file's bytes; raises ObjectNotFound."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def has(self, key: str) -> bool:
        """Whether a file exists under the key."""
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``, skipping half-written temporary files."""
        # walk only the directory that contains the prefix
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = self.root / base if base else self.root
        if not top.is_dir():
            return
        for dirpath, _dirs, files in os.walk(top):
            rel = os.path.relpath(dirpath, self.root)
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    yield key

    def delete(self, key: str) -> None:
        """Remove the file, if there is one."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def scan(self, prefix: str = "") -> Iterator[tuple[str, float, int]]:
        """(key, modification time, size) of every file under ``prefix``."""
        for key in self.list(prefix):
            try:
                st = self._path(key).stat()
            except FileNotFoundError:
                continue
            yield key, st.st_mtime, st.st_size

    def describe(self) -> str:
        """``local:`` and the root directory."""
        return f"local:{self.root}"


class S3Target(Target):
    """An S3 bucket (AWS or any S3-compatible service), optionally under a key prefix."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", client: Any = None, **client_args: Any) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client or boto3.client("s3", **client_args)

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Upload the object, replacing any there (a PUT is atomic)."""
        self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Upload the object only when the key is free (a conditional PUT, ``If-None-Match: *``)."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise

    def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound."""
        from botocore.exceptions import ClientError

        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()
            return body
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise

    def has(self, key: str) -> bool:
        """Whether the bucket holds an object under the key."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``, relative to the target's own prefix."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) :]

    def delete(self, key: str) -> None:
        """Delete the object (a missing key is no error to S3)."""
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def scan(self, prefix: str = "") -> Iterator[tuple[str, float, int]]:
        """(key, last-modified time, size) of every object under ``prefix``."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) :], obj["LastModified"].timestamp(), int(obj["Size"])

    def describe(self) -> str:
        """The target's ``s3://`` URL."""
        return f"s3://{self.bucket}/{self.prefix}"


class AzureTarget(Target):
    """An Azure Blob Storage container."""

    kind = "azure"

    def __init__(self, container: str, connection_string: str, prefix: str = "") -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        self.service = BlobServiceClient.from_connection_string(connection_string)
        self.container = self.service.get_container_client(container)
        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.name = container

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Upload the blob, replacing any there."""
        self.container.upload_blob(self._k(key), data, overwrite=True)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Upload the blob only when the name is free."""
        from azure.core.exceptions import ResourceExistsError

        try:
            self.container.upload_blob(self._k(key), data, overwrite=False)
            return True
        except ResourceExistsError:
            return False

    def get(self, key: str) -> bytes:
        """The blob's bytes; raises ObjectNotFound."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return bytes(self.container.download_blob(self._k(key)).readall())
        except ResourceNotFoundError:
            raise ObjectNotFound(key) from None

    def has(self, key: str) -> bool:
        """Whether the container holds a blob under the key."""
        return bool(self.container.get_blob_client(self._k(key)).exists())

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``, relative to the target's own prefix."""
        for blob in self.container.list_blobs(name_starts_with=self.prefix + prefix):
            yield blob.name[len(self.prefix) :]

    def delete(self, key: str) -> None:
        """Delete the blob, if there is one."""
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self.container.delete_blob(self._k(key))

    def scan(self, prefix: str = "") -> Iterator[tuple[str, float, int]]:
        """(key, last-modified time, size) of every blob under ``prefix``."""
        for blob in self.container.list_blobs(name_starts_with=self.prefix + prefix):
            yield blob.name[len(self.prefix) :], blob.last_modified.timestamp(), int(blob.size)

    def describe(self) -> str:
        """The target's ``azure://`` URL."""
        return f"azure://{self.name}/{self.prefix}"


class GCSTarget(Target):
    """A Google Cloud Storage bucket."""

    kind = "gcs"

    def __init__(self, bucket: str, prefix: str = "", client: Any = None, create: bool = False) -> None:
        from google.cloud import storage

        self.client = client or storage.Client()
        self.bucket = self.client.bucket(bucket)
        if create and not self.bucket.exists():
            self.bucket = self.client.create_bucket(bucket)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.name = bucket

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Upload the object, replacing any there."""
        self.bucket.blob(self._k(key)).upload_from_string(data, content_type="application/octet-stream")

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Upload the object only when the key is free (a generation-0 precondition)."""
        from google.api_core.exceptions import PreconditionFailed

        # GCS makes the generation-0 precondition atomic; gcp-storage-emulator ignores it, so the
        # existence check in front keeps the contract (non-atomically) there too
        if self.has(key):
            return False
        try:
            self.bucket.blob(self._k(key)).upload_from_string(
                data, content_type="application/octet-stream", if_generation_match=0
            )
            return True
        except PreconditionFailed:
            return False

    def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound."""
        from google.api_core.exceptions import NotFound

        try:
            return bytes(self.bucket.blob(self._k(key)).download_as_bytes())
        except NotFound:
            raise ObjectNotFound(key) from None

    def has(self, key: str) -> bool:
        """Whether the bucket holds an object under the key."""
        return bool(self.bucket.blob(self._k(key)).exists())

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``, relative to the target's own prefix."""
        for blob in self.client.list_blobs(self.bucket, prefix=self.prefix + prefix):
            yield blob.name[len(self.prefix) :]

    def delete(self, key: str) -> None:
        """Delete the object, if there is one."""
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self.bucket.blob(self._k(key)).delete()

    def scan(self, prefix: str = "") -> Iterator[tuple[str, float, int]]:
        """(key, last-modified time, size) of every object under ``prefix``."""
        for blob in self.client.list_blobs(self.bucket, prefix=self.prefix + prefix):
            yield blob.name[len(self.prefix) :], blob.updated.timestamp(), int(blob.size)

    def describe(self) -> str:
        """The target's ``gs://`` URL."""
        return f"gs://{self.name}/{self.prefix}"


def target_from_url(url: str, **options: Any) -> Target:
    """A target from a URL, as a backup policy or a DR site names it.

    - ``/path`` or ``file:///path``: LocalTarget
    - ``s3://bucket/prefix``: S3Target; options go to ``boto3.client`` (``endpoint_url``,
      ``region_name``, ``aws_access_key_id``, ``aws_secret_access_key``)
    - ``azure://container/prefix``: AzureTarget; option ``connection_string`` (required)
    - ``gs://bucket/prefix``: GCSTarget; option ``project``, ``endpoint`` (an emulator's URL, with
      anonymous credentials), ``create`` (make the bucket if missing)
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    prefix = parts.path.lstrip("/")
    if parts.scheme in ("", "file"):
        return LocalTarget(parts.path if parts.scheme else url, fsync=options.get("fsync", True))
    if parts.scheme == "s3":
        return S3Target(parts.netloc, prefix, **options)
    if parts.scheme == "azure":
        if "connection_string" not in options:
            raise ValueError("an azure:// target needs the option connection_string")
        return AzureTarget(parts.netloc, options["connection_string"], prefix)
    if parts.scheme == "gs":
        from google.cloud import storage

        endpoint = options.get("endpoint")
        if endpoint:
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(
                project=options.get("project", "test"),
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": endpoint},
            )
        else:
            client = storage.Client(project=options.get("project"))
        return GCSTarget(parts.netloc, prefix, client=client, create=bool(options.get("create")))
    raise ValueError(f"unknown backup target scheme {parts.scheme!r}: use file, s3, azure or gs")
