"""The work folder outside the source tree: installed apps, the base image layout and scratch space.

Each prepared item is kept with a stamp file that records the inputs it was made from, so a
later run reuses it while those inputs are unchanged and remakes it otherwise.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

from .measure import log, remove_tree, run_untimed

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPOSITORY_ROOT = os.path.dirname(BENCH_DIR)
FIXTURES_DIR = os.path.join(BENCH_DIR, "apps")
APPS = ("light", "medium", "large")
BASE_REPOSITORY = "lambda/nodejs"
BASE_TAG = "bench"


def file_sha256(*paths):
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as content:
            digest.update(content.read())
    return digest.hexdigest()


class Workspace:
    def __init__(self, root):
        self.root = root
        self.apps_dir = os.path.join(root, "apps")
        self.stamps_dir = os.path.join(root, "stamps")
        self.base_layout = os.path.join(root, "base-layout")
        self.scratch_dir = os.path.join(root, "scratch")

    def copy_binary(self, binary):
        """Copy BINARY into the work folder and return the copy's path."""
        copy = os.path.join(self.root, "bin", os.path.basename(binary))
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        shutil.copy2(binary, copy)
        return copy

    def app_dir(self, name):
        return os.path.join(self.apps_dir, name)

    def edit_file(self, name):
        """Return the app's app.js, the file that the one-file-changed scenario edits."""
        return os.path.join(self.app_dir(name), "app.js")

    def prepare(self, apps):
        for folder in (self.apps_dir, self.stamps_dir):
            os.makedirs(folder, exist_ok=True)
        remove_tree(self.scratch_dir)
        os.makedirs(self.scratch_dir)

        needs_medium = "medium" in apps or "large" in apps
        for name in ("light", "medium"):
            if name in apps or (name == "medium" and needs_medium):
                self.prepare_installed_app(name)
        if "large" in apps:
            self.prepare_large_app()
        self.prepare_base()

    # --- Stamps -------------------------------------------------------------------------------

    def stamp_matches(self, name, value, made_path):
        path = os.path.join(self.stamps_dir, name)
        if not os.path.exists(made_path) or not os.path.exists(path):
            return False
        with open(path) as stamp:
            return stamp.read() == value

    def write_stamp(self, name, value):
        with open(os.path.join(self.stamps_dir, name), "w") as stamp:
            stamp.write(value)

    # --- Apps ---------------------------------------------------------------------------------

    def prepare_installed_app(self, name):
        """Copy the fixture's files into the work folder and install its node_modules with npm ci."""
        fixture = os.path.join(FIXTURES_DIR, name)
        target = self.app_dir(name)
        lock_stamp = file_sha256(os.path.join(fixture, "package.json"), os.path.join(fixture, "package-lock.json"))
        installed = os.path.join(target, "node_modules")

        if not self.stamp_matches(f"{name}.npm-ci", lock_stamp, installed):
            log(f"{name}: npm ci into {target}")
            remove_tree(target)
            shutil.copytree(fixture, target)
            run_untimed(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target)
            self.write_stamp(f"{name}.npm-ci", lock_stamp)
        self.restore_app_files(name, fixture)

    def restore_app_files(self, name, fixture):
        """Put the fixture's own files (app.js and the rest) back over an earlier run's copies."""
        for entry in sorted(os.listdir(fixture)):
            source = os.path.join(fixture, entry)
            if os.path.isfile(source):
                shutil.copy2(source, os.path.join(self.app_dir(name), entry))

    def prepare_large_app(self):
        generator = os.path.join(BENCH_DIR, "make_large_app.py")
        medium_fixture = os.path.join(FIXTURES_DIR, "medium")
        stamp = file_sha256(generator, os.path.join(medium_fixture, "package-lock.json"),
                            os.path.join(medium_fixture, "package.json"))
        target = self.app_dir("large")
        if not self.stamp_matches("large.generated", stamp, target):
            log(f"large: generating {target} with make_large_app.py (about a minute)")
            run_untimed([sys.executable, generator, self.app_dir("medium"), target])
            self.write_stamp("large.generated", stamp)
        self.restore_app_files("large", medium_fixture)

    # --- Base image ---------------------------------------------------------------------------

    def prepare_base(self):
        generator = os.path.join(BENCH_DIR, "make_base.py")
        stamp = file_sha256(generator)
        if not self.stamp_matches("base.generated", stamp, os.path.join(self.base_layout, "index.json")):
            log(f"base: generating the base image layout in {self.base_layout} with make_base.py")
            run_untimed([sys.executable, generator, self.base_layout, "--tag", BASE_TAG])
            self.write_stamp("base.generated", stamp)

    def push_base(self, registry):
        """Push the base layout into REGISTRY and return its reference."""
        push_layout = os.path.join(REPOSITORY_ROOT, "tests", "tools", "push_layout.py")
        output = run_untimed([sys.executable, push_layout, self.base_layout, registry.url, BASE_REPOSITORY, BASE_TAG])
        log(f"base: pushed {output.strip()}")
        return f"{registry.host}/{BASE_REPOSITORY}:{BASE_TAG}"


def app_statistics(app_dir):
    """Return the app folder's file count, bytes of file data and uncompressed tar size."""
    files = 0
    data_bytes = 0
    for directory, dirnames, filenames in os.walk(app_dir):
        for name in filenames:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                files += 1
                data_bytes += os.lstat(path).st_size
    tar = subprocess.Popen(["tar", "-cf", "-", "-C", app_dir, "."], stdout=subprocess.PIPE)
    tar_bytes = 0
    for chunk in iter(lambda: tar.stdout.read(1 << 20), b""):
        tar_bytes += len(chunk)
    tar.wait()
    return {"files": files, "file_bytes": data_bytes, "tar_bytes": tar_bytes}


def base_statistics(layout):
    """Return the base image's index digest, layer count and compressed size from its layout."""
    with open(os.path.join(layout, "index.json")) as index_file:
        top = json.load(index_file)["manifests"][0]

    def read_blob(digest):
        with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])) as blob:
            return json.load(blob)

    manifest = read_blob(read_blob(top["digest"])["manifests"][0]["digest"])
    layers = manifest["layers"]
    return {"index_digest": top["digest"], "layers": len(layers),
            "compressed_bytes": sum(layer["size"] for layer in layers)}
