#!/usr/bin/env python3
"""Generate the synthetic AWS Lambda Node.js base image used by the tests.

Writes two OCI image layouts beside this script, unless --output-dir names another folder:

- base/: an OCI image index tagged "24" (annotation org.opencontainers.image.ref.name) with
  OCI manifests for linux/amd64 and linux/arm64/v8.
- base-docker/: the same configs and layers under Docker media types (a manifest list).

Each manifest has a config shaped like public.ecr.aws/lambda/nodejs's and two gzip layers. The
output is byte-identical from run to run. Tar entries have a fixed mtime, uid 0, gid 0 and empty
user and group names. Gzip headers carry mtime 0 and no file name. JSON has sorted keys and
compact separators.

NOTE: gzip output depends on the zlib build as well, so another zlib (zlib-ng, for one) may
compress to other bytes. The committed layouts were made with zlib 1.2.13 and Python 3.11.

Standard library only. Usage: python3 testdata/make-base.py [--output-dir DIR]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

# 2025-01-01T00:00:00Z, the mtime of every tar entry and the config's "created".
EPOCH = 1735689600
CREATED = "2025-01-01T00:00:00Z"
REF_NAME = "24"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MEDIA_TYPES = {
    "oci": {"index": OCI_INDEX, "manifest": OCI_MANIFEST, "config": OCI_CONFIG, "layer": OCI_LAYER},
    "docker": {
        "index": DOCKER_LIST,
        "manifest": DOCKER_MANIFEST,
        "config": DOCKER_CONFIG,
        "layer": DOCKER_LAYER,
    },
}

# Variables that public.ecr.aws/lambda/nodejs sets and that the Lambda runtime relies on.
ENV = [
    "PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib"
    ":/var/task:/var/task/lib:/opt/lib",
    "LANG=en_US.UTF-8",
    "TZ=:/etc/localtime",
    "LAMBDA_TASK_ROOT=/var/task",
    "LAMBDA_RUNTIME_DIR=/var/runtime",
]

PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
]

OS_RELEASE = b"""NAME="Synthetic Lambda Base"
VERSION="24"
ID="synthetic-lambda-base"
PRETTY_NAME="Synthetic AWS Lambda Node.js base (test fixture, no Node.js inside)"
"""

ENTRYPOINT = b"""#!/bin/sh
# Synthetic stand-in for the Lambda base image's entrypoint. The real one starts the
# Runtime Interface Emulator outside Lambda and /var/runtime/bootstrap inside it.
exec /var/runtime/bootstrap "$@"
"""

BOOTSTRAP = b"""#!/bin/sh
# Synthetic stand-in for the Node.js runtime interface client. It cannot run a handler.
echo "synthetic base image: no Node.js runtime here" >&2
exit 1
"""

RUNTIME_README = b"""This is a synthetic AWS Lambda Node.js base image made by testdata/make-base.py.
It has the real image's config and directory layout but no Node.js runtime.
"""


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def directory(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def regular_file(name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def symlink(name, target):
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    return info, None


def make_tar(entries):
    """Return an uncompressed tar of (TarInfo, data) pairs, owned by root with a fixed mtime."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            info.mtime = EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def gzip_bytes(data):
    buffer = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of anything that changes between runs.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


def os_layer(platform):
    architecture = platform["architecture"] + ("/" + platform["variant"] if "variant" in platform else "")
    return make_tar(
        [
            directory("etc/"),
            regular_file("etc/architecture", architecture.encode() + b"\n"),
            symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
            regular_file("etc/os-release", OS_RELEASE),
            regular_file("lambda-entrypoint.sh", ENTRYPOINT, 0o755),
            directory("var/"),
            directory("var/lang/"),
            directory("var/lang/bin/"),
            directory("var/runtime/"),
            regular_file("var/runtime/bootstrap", BOOTSTRAP, 0o755),
        ]
    )


def task_layer():
    return make_tar(
        [
            directory("var/"),
            directory("var/runtime/"),
            regular_file("var/runtime/README", RUNTIME_README),
            directory("var/task/"),
        ]
    )


def image_config(platform, diff_ids):
    config = {
        "architecture": platform["architecture"],
        "os": platform["os"],
        "created": CREATED,
        "config": {
            "Env": ENV,
            "Entrypoint": ["/lambda-entrypoint.sh"],
            "WorkingDir": "/var/task",
        },
        # The real Lambda base images ship "history": null, so tools must accept it.
        "history": None,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        # A field no spec defines: tools that rewrite the config must keep it.
        "x-synthetic": "made by testdata/make-base.py",
    }
    if "variant" in platform:
        config["variant"] = platform["variant"]
    return config


class Layout:
    """An OCI image layout being written: blobs/sha256/<hex>, index.json and oci-layout."""

    def __init__(self, path):
        self.path = path

    def reset(self):
        # Blobs from an earlier run that this run does not write would break byte-identity.
        shutil.rmtree(os.path.join(self.path, "blobs"), ignore_errors=True)
        os.makedirs(os.path.join(self.path, "blobs", "sha256"))

    def add_blob(self, media_type, data, **extra):
        """Write a blob and return its descriptor."""
        digest = sha256_digest(data)
        with open(os.path.join(self.path, "blobs", "sha256", digest[len("sha256:"):]), "wb") as out:
            out.write(data)
        descriptor = {"mediaType": media_type, "digest": digest, "size": len(data)}
        descriptor.update(extra)
        return descriptor

    def write_index(self, top):
        descriptor = dict(top, annotations={"org.opencontainers.image.ref.name": REF_NAME})
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
        with open(os.path.join(self.path, "index.json"), "wb") as out:
            out.write(canonical_json(index))
        with open(os.path.join(self.path, "oci-layout"), "wb") as out:
            out.write(canonical_json({"imageLayoutVersion": "1.0.0"}))


def build_images():
    """Return per platform: (platform, config bytes, [(gzip bytes, diff_id)])."""
    images = []
    for platform in PLATFORMS:
        layers = []
        for tar in (os_layer(platform), task_layer()):
            layers.append((gzip_bytes(tar), sha256_digest(tar)))
        config = canonical_json(image_config(platform, [diff_id for _, diff_id in layers]))
        images.append((platform, config, layers))
    return images


def write_layout(path, family, images):
    types = MEDIA_TYPES[family]
    layout = Layout(path)
    layout.reset()

    manifests = []
    for platform, config, layers in images:
        manifest = {
            "schemaVersion": 2,
            "mediaType": types["manifest"],
            "config": layout.add_blob(types["config"], config),
            "layers": [layout.add_blob(types["layer"], data) for data, _ in layers],
        }
        manifests.append(layout.add_blob(types["manifest"], canonical_json(manifest), platform=platform))

    index = {"schemaVersion": 2, "mediaType": types["index"], "manifests": manifests}
    top = layout.add_blob(types["index"], canonical_json(index))
    layout.write_index(top)
    return top, manifests


def main():
    script_dir = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        default=script_dir,
        help="folder to write base/ and base-docker/ into (default: the script's folder)",
    )
    args = parser.parse_args()

    images = build_images()
    written = []
    for name, family in (("base", "oci"), ("base-docker", "docker")):
        written.append((name, *write_layout(os.path.join(args.output_dir, name), family, images)))

    # The summary comes after all writing, so a reader that closes stdout early cannot stop it.
    try:
        for name, top, manifests in written:
            print(f"{name}: {REF_NAME} {top['digest']}")
            for descriptor in manifests:
                platform = descriptor["platform"]
                keys = [key for key in ("os", "architecture", "variant") if key in platform]
                print(f"  {'/'.join(platform[key] for key in keys)} {descriptor['digest']}")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
