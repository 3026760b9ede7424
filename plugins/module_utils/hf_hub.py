# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A GGUF model named by Hugging Face repository and file, as llama.cpp's -hf does, resolved
into the download URL and sha256 of each of its files.

The Hub's API lists a repository's files at {endpoint}/api/models/{repo}/tree/{revision}
(?recursive=true): each with its path and size, and a large (LFS) file with its "lfs" object,
whose oid is the file's sha256. A file downloads from {endpoint}/{repo}/resolve/{revision}/{path}.
A split model (name-00001-of-00003.gguf) is every part, in order: llama.cpp loads the first and
finds the rest beside it. fetch(url) -> the parsed JSON is given by the caller."""

from __future__ import annotations

import re
from urllib.parse import quote

SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$")
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class HubError(Exception):
    """What is wrong, said so that the user can fix it."""


def tree_url(endpoint, repo, revision):
    return f"{endpoint.rstrip('/')}/api/models/{repo}/tree/{quote(revision, safe='')}?recursive=true"


def file_url(endpoint, repo, revision, path):
    return f"{endpoint.rstrip('/')}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"


def gguf_files(tree):
    """{path: entry} of the repository's GGUF files."""
    if not isinstance(tree, list):
        raise HubError(f"the Hub answered with {type(tree).__name__}, not a list of files")
    return {entry["path"]: entry for entry in tree
            if isinstance(entry, dict) and entry.get("type", "file") == "file" and str(entry.get("path", "")).endswith(".gguf")}


def parts_of(path, files):
    """The paths of the model that path names: itself, or all parts of a split model in order."""
    match = SPLIT.match(path.rsplit("/", 1)[-1])
    if not match:
        return [path]
    folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    total = int(match["total"])
    parts = [f"{folder}{match['stem']}-{i:05d}-of-{total:05d}.gguf" for i in range(1, total + 1)]
    missing = [p for p in parts if p not in files]
    if missing:
        raise HubError(f"{path} is part of a split model of {total} files, but the repository lacks {', '.join(missing)}")
    return parts


def resolve(repo, file, revision, endpoint, fetch):
    """[{'url', 'sha256', 'name', 'size'}] for the model; the first is the one llama.cpp loads."""
    if not REPO.match(repo or ""):
        raise HubError(f"hf_repo must be 'owner/name', got {repo!r}")
    if not file:
        raise HubError("hf_file is empty: name the GGUF file of the repository (for a split model, its first part)")
    files = gguf_files(fetch(tree_url(endpoint, repo, revision)))
    if file not in files:
        choices = ", ".join(sorted(p for p in files if not SPLIT.match(p.rsplit("/", 1)[-1])
                                   or SPLIT.match(p.rsplit("/", 1)[-1])["part"] == "00001")) or "none"
        raise HubError(f"{repo} (revision {revision}) has no file {file}; its GGUF files: {choices}")
    resolved = []
    for path in parts_of(file, files):
        entry = files[path]
        sha256 = (entry.get("lfs") or {}).get("oid") or (entry.get("lfs") or {}).get("sha256")
        if not sha256 or not re.fullmatch(r"[0-9a-f]{64}", str(sha256)):
            raise HubError(f"{repo}: {path} has no LFS sha256 in the Hub's answer, so its download could not be verified")
        resolved.append({"url": file_url(endpoint, repo, revision, path), "sha256": sha256,
                         "name": path.rsplit("/", 1)[-1], "size": entry.get("size")})
    return resolved
