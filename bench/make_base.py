#!/usr/bin/env python3
"""Generate the synthetic AWS Lambda Node.js base image that the benchmark builds on.

Writes an OCI image layout to OUTPUT: an image index tagged TAG (annotation
org.opencontainers.image.ref.name) with one linux/amd64 manifest and six gzip layers, about
100 MB compressed in all. The layers hold real files of this machine, so that they compress like
a real base image:

1. and 2. shared libraries from /usr/lib/x86_64-linux-gnu, as usr/lib64 (about 20 MB each);
3. files from /usr/share (about 18 MB);
   these three layers leave out files over 4 MB and stop where their budget is reached;
4. the Node.js binary at /usr/bin/node, as var/lang/bin/node;
5. npm from /usr/lib/node_modules/npm, as var/lang/lib/node_modules/npm;
6. stand-ins for the Lambda runtime files: /lambda-entrypoint.sh, var/runtime/bootstrap, var/task.

The config is shaped like public.ecr.aws/lambda/nodejs's: its Env (LAMBDA_TASK_ROOT=/var/task
and the rest), Entrypoint /lambda-entrypoint.sh, WorkingDir /var/task and "history": null.

The output is byte-identical from run to run on one machine. Files are taken in sorted order,
and tar entries have a fixed mtime, uid 0, gid 0 and no user or group names. Gzip headers carry
mtime 0 and no file name. NOTE: the digests change when the machine's files change (a package
upgrade, another Node.js) or with another zlib build.

Standard library only. Usage: python3 bench/make_base.py OUTPUT [--tag TAG]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile

# 2025-01-01T00:00:00Z, the mtime of every tar entry and the config's "created".
EPOCH = 1735689600
CREATED = "2025-01-01T00:00:00Z"
MB = 1_000_000
GZIP_LEVEL = 6
# Files larger than this many bytes are left out of the layers that have a size budget.
MAX_FILE_SIZE = 4 * MB

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

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

ENTRYPOINT = b"""#!/bin/sh
# Benchmark stand-in for the Lambda base image's entrypoint.
exec /var/runtime/bootstrap "$@"
"""

BOOTSTRAP = b"""#!/bin/sh
# Benchmark stand-in for the Node.js runtime interface client. It cannot run a handler.
echo "synthetic benchmark base image: no runtime interface client here" >&2
exit 1
"""

OS_RELEASE = b"""NAME="Synthetic Lambda Base"
ID="synthetic-lambda-base"
PRETTY_NAME="Synthetic AWS Lambda Node.js base (benchmark fixture)"
"""


class DigestWriter:
    """A write-only file that hashes and counts the bytes it passes on to another file."""

    def __init__(self, inner):
        self.inner = inner
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha256.update(data)
        self.size += len(data)
        return self.inner.write(data)

    def digest(self):
        return "sha256:" + self.sha256.hexdigest()


def walk_files(root):
    """Yield (path, lstat result) for every directory, regular file and symlink under ROOT, sorted.

    __pycache__ folders are skipped because Python may create them while the benchmark runs.
    """
    if not os.path.isdir(root):
        yield root, os.lstat(root)
        return
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(name for name in dirnames if name != "__pycache__")
        yield directory, os.lstat(directory)
        for name in sorted(filenames):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
                yield path, info


def mapped_entries(root, destination):
    """Yield (destination path, source path, lstat) for the files under ROOT, moved to DESTINATION."""
    for path, info in walk_files(root):
        relative = os.path.relpath(path, root)
        name = destination if relative == "." else f"{destination}/{relative}"
        yield name, path, info


class LayerWriter:
    """One gzip tar layer being written to a temporary blob file."""

    def __init__(self, blobs_dir, number):
        self.temporary_path = os.path.join(blobs_dir, f".layer-{number}.tmp")
        self.file = open(self.temporary_path, "wb")
        self.compressed = DigestWriter(self.file)
        # filename="" and mtime=0 keep the gzip header free of anything that changes between runs.
        self.gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self.compressed,
                                  compresslevel=GZIP_LEVEL, mtime=0)
        self.uncompressed = DigestWriter(self.gzip)
        self.tar = tarfile.open(fileobj=self.uncompressed, mode="w|", format=tarfile.PAX_FORMAT)
        self.directories = set()

    def add_parents(self, name):
        parts = name.split("/")[:-1]
        for end in range(1, len(parts) + 1):
            self.add_directory("/".join(parts[:end]))

    def add_directory(self, name, mode=0o755):
        if name in self.directories:
            return
        self.directories.add(name)
        self.add(self.tar_info(name, tarfile.DIRTYPE, mode))

    def add_bytes(self, name, data, mode=0o644):
        self.add_parents(name)
        info = self.tar_info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.add(info, io.BytesIO(data))

    def add_file(self, name, path, file_stat):
        """Add the directory, regular file or symlink at PATH under NAME."""
        self.add_parents(name)
        mode = stat.S_IMODE(file_stat.st_mode)
        if stat.S_ISDIR(file_stat.st_mode):
            self.add_directory(name, mode)
        elif stat.S_ISLNK(file_stat.st_mode):
            info = self.tar_info(name, tarfile.SYMTYPE, 0o777)
            info.linkname = os.readlink(path)
            self.add(info)
        else:
            info = self.tar_info(name, tarfile.REGTYPE, mode)
            info.size = file_stat.st_size
            with open(path, "rb") as source:
                self.add(info, source)

    @staticmethod
    def tar_info(name, kind, mode):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = EPOCH
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def add(self, info, data=None):
        self.tar.addfile(info, data)

    def finish(self, blobs_dir):
        """Close the layer, move it to its digest's name and return (descriptor, diff_id)."""
        self.tar.close()
        self.gzip.close()
        self.file.close()
        digest = self.compressed.digest()
        os.replace(self.temporary_path, os.path.join(blobs_dir, digest.split(":", 1)[1]))
        descriptor = {"mediaType": OCI_LAYER, "digest": digest, "size": self.compressed.size}
        return descriptor, self.uncompressed.digest()


def fill_layer(layer, entries, budget):
    """Add ENTRIES until the layer's compressed size reaches BUDGET bytes (None: add them all).

    With a budget, files over MAX_FILE_SIZE are skipped, so that one large library cannot push a
    layer far past its budget.
    """
    for name, path, file_stat in entries:
        if budget is not None and file_stat.st_size > MAX_FILE_SIZE and stat.S_ISREG(file_stat.st_mode):
            continue
        layer.add_file(name, path, file_stat)
        if budget is not None and layer.compressed.size >= budget:
            return


def add_runtime_files(layer):
    layer.add_bytes("etc/os-release", OS_RELEASE)
    layer.add_bytes("lambda-entrypoint.sh", ENTRYPOINT, 0o755)
    layer.add_bytes("var/runtime/bootstrap", BOOTSTRAP, 0o755)
    layer.add_directory("var/task")


def write_layers(blobs_dir):
    """Write the six layers and return [(descriptor, diff_id)]."""
    libraries = mapped_entries("/usr/lib/x86_64-linux-gnu", "usr/lib64")
    steps = [
        lambda layer: fill_layer(layer, libraries, 20 * MB),
        lambda layer: fill_layer(layer, libraries, 20 * MB),
        lambda layer: fill_layer(layer, mapped_entries("/usr/share", "usr/share"), 18 * MB),
        lambda layer: fill_layer(layer, mapped_entries(os.path.realpath("/usr/bin/node"), "var/lang/bin/node"), None),
        lambda layer: fill_layer(layer, mapped_entries("/usr/lib/node_modules/npm", "var/lang/lib/node_modules/npm"), None),
        add_runtime_files,
    ]
    layers = []
    for number, fill in enumerate(steps, start=1):
        layer = LayerWriter(blobs_dir, number)
        fill(layer)
        layers.append(layer.finish(blobs_dir))
    return layers


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def add_blob(blobs_dir, media_type, data, **extra):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs_dir, digest.split(":", 1)[1]), "wb") as out:
        out.write(data)
    return dict({"mediaType": media_type, "digest": digest, "size": len(data)}, **extra)


def image_config(diff_ids):
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {"Env": ENV, "Entrypoint": ["/lambda-entrypoint.sh"], "WorkingDir": "/var/task"},
        # Like the Lambda base images (see testdata/make-base.py), the config has "history": null.
        "history": None,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }


def write_layout(output, tag):
    """Write the layout and return the index descriptor and the layer descriptors."""
    shutil.rmtree(output, ignore_errors=True)
    blobs_dir = os.path.join(output, "blobs", "sha256")
    os.makedirs(blobs_dir)

    layers = write_layers(blobs_dir)
    config = add_blob(blobs_dir, OCI_CONFIG, canonical_json(image_config([diff_id for _, diff_id in layers])))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [descriptor for descriptor, _ in layers],
    }
    platform = {"architecture": "amd64", "os": "linux"}
    manifest_descriptor = add_blob(blobs_dir, OCI_MANIFEST, canonical_json(manifest), platform=platform)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [manifest_descriptor]}
    top = add_blob(blobs_dir, OCI_INDEX, canonical_json(index))

    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(output, "index.json"), "wb") as out:
        out.write(canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}))
    with open(os.path.join(output, "oci-layout"), "wb") as out:
        out.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return top, manifest["layers"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="folder to write the OCI image layout to; replaced if it exists")
    parser.add_argument("--tag", default="bench", help="ref name of the index in index.json (default: bench)")
    args = parser.parse_args()

    top, layers = write_layout(args.output, args.tag)
    total = sum(layer["size"] for layer in layers)
    print(f"{args.output}: {args.tag} {top['digest']}, {len(layers)} layers, {total / MB:.1f} MB compressed")
    for layer in layers:
        print(f"  {layer['digest']} {layer['size'] / MB:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
