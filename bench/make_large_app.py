#!/usr/bin/env python3
"""Generate the benchmark's "large" app (about 1 GB) from the installed "medium" app.

    make_large_app.py MEDIUM OUTPUT [--copies N]

MEDIUM is the medium app's folder with node_modules installed (npm ci). OUTPUT gets the medium
app's own files and node_modules, plus N copies of that node_modules tree (default 45) under
node_modules/@bench/copy-1 … copy-N. Every regular file in copy K ends with the line
"/* @bench/copy-K */", so no two copies hold identical files and no tool can share work
between them, yet each compresses like real JavaScript packages. Symlinks are copied as symlinks.

The file contents are the same from run to run for the same MEDIUM. The output is built in a
temporary folder beside OUTPUT and then renamed, so an interrupted run leaves no half-made app.

Standard library only.
"""

import argparse
import os
import shutil
import stat
import sys


def copy_tree_with_token(source, destination, token):
    """Copy SOURCE to DESTINATION with TOKEN appended to every regular file, and return (files, bytes)."""
    files = 0
    size = 0
    for directory, dirnames, filenames in os.walk(source):
        dirnames.sort()
        target_directory = os.path.join(destination, os.path.relpath(directory, source))
        os.makedirs(target_directory, exist_ok=True)
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(directory, d))]):
            path = os.path.join(directory, name)
            target = os.path.join(target_directory, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(path), target)
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            with open(path, "rb") as reader:
                data = reader.read()
            with open(target, "wb") as writer:
                writer.write(data)
                writer.write(token)
            os.chmod(target, stat.S_IMODE(info.st_mode))
            files += 1
            size += len(data) + len(token)
    return files, size


def make_large_app(medium, output, copies):
    node_modules = os.path.join(medium, "node_modules")
    if not os.path.isdir(node_modules):
        raise FileNotFoundError(f"{node_modules} not found; run `npm ci` in {medium} first")

    partial = output.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(medium, partial, symlinks=True)

    files = 0
    size = 0
    for number in range(1, copies + 1):
        destination = os.path.join(partial, "node_modules", "@bench", f"copy-{number}")
        token = f"\n/* @bench/copy-{number} */\n".encode()
        copied_files, copied_size = copy_tree_with_token(node_modules, destination, token)
        files += copied_files
        size += copied_size

    shutil.rmtree(output, ignore_errors=True)
    os.rename(partial, output)
    return files, size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("medium", help="the medium app's folder, with node_modules installed")
    parser.add_argument("output", help="folder to create the large app in; replaced if it exists")
    parser.add_argument("--copies", type=int, default=45, help="copies of node_modules to add (default: 45)")
    args = parser.parse_args()
    if args.copies < 1:
        parser.error(f"--copies must be at least 1, not {args.copies}")

    try:
        files, size = make_large_app(args.medium, args.output, args.copies)
    except OSError as error:
        print(f"make_large_app.py: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: {args.copies} copies of node_modules, {files} files, {size / 1e6:.0f} MB added")
    return 0


if __name__ == "__main__":
    sys.exit(main())
