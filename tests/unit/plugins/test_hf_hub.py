"""Resolving a model named by Hugging Face repository and file from the Hub's tree listing."""

from __future__ import annotations

import pytest

from ansible_collections.llamacpp.cluster.plugins.module_utils.hf_hub import HubError, resolve

SHA = {n: f"{n:x}" * 64 for n in range(1, 5)}
TREE = [
    {"type": "directory", "path": "split"},
    {"type": "file", "path": "README.md", "size": 10, "oid": "abc"},
    {"type": "file", "path": "model-Q4_K_M.gguf", "size": 100, "lfs": {"oid": SHA[1], "size": 100}},
    {"type": "file", "path": "split/big-00002-of-00002.gguf", "size": 50, "lfs": {"oid": SHA[3], "size": 50}},
    {"type": "file", "path": "split/big-00001-of-00002.gguf", "size": 60, "lfs": {"oid": SHA[2], "size": 60}},
    {"type": "file", "path": "small.gguf", "size": 5, "oid": "0" * 40},
]
SEEN = []


def fetch(url):
    SEEN.append(url)
    return TREE


def test_one_file_resolves_to_its_url_and_lfs_sha256():
    files = resolve("owner/repo", "model-Q4_K_M.gguf", "main", "http://hub.test/", fetch)
    assert SEEN[-1] == "http://hub.test/api/models/owner/repo/tree/main?recursive=true"
    assert files == [{"url": "http://hub.test/owner/repo/resolve/main/model-Q4_K_M.gguf", "sha256": SHA[1],
                      "name": "model-Q4_K_M.gguf", "size": 100}]


def test_a_split_model_is_every_part_in_order():
    files = resolve("owner/repo", "split/big-00001-of-00002.gguf", "v1.0", "http://hub.test", fetch)
    assert [f["name"] for f in files] == ["big-00001-of-00002.gguf", "big-00002-of-00002.gguf"]
    assert [f["sha256"] for f in files] == [SHA[2], SHA[3]]
    assert files[1]["url"] == "http://hub.test/owner/repo/resolve/v1.0/split/big-00002-of-00002.gguf"


def test_a_missing_part_of_a_split_model_is_named():
    tree = [e for e in TREE if e["path"] != "split/big-00002-of-00002.gguf"]
    with pytest.raises(HubError, match="split model of 2 files, but the repository lacks split/big-00002-of-00002.gguf"):
        resolve("owner/repo", "split/big-00001-of-00002.gguf", "main", "http://hub.test", lambda url: tree)


def test_an_unknown_file_lists_the_repositorys_models():
    with pytest.raises(HubError) as exc:
        resolve("owner/repo", "model-Q8_0.gguf", "main", "http://hub.test", fetch)
    assert str(exc.value) == ("owner/repo (revision main) has no file model-Q8_0.gguf; its GGUF files: "
                              "model-Q4_K_M.gguf, small.gguf, split/big-00001-of-00002.gguf")


def test_a_file_without_lfs_sha256_cannot_be_verified():
    with pytest.raises(HubError, match="small.gguf has no LFS sha256"):
        resolve("owner/repo", "small.gguf", "main", "http://hub.test", fetch)


@pytest.mark.parametrize("repo, file, message", [
    ("just-a-name", "x.gguf", "hf_repo must be 'owner/name'"),
    ("owner/repo", "", "hf_file is empty"),
])
def test_bad_names_are_refused_before_asking(repo, file, message):
    with pytest.raises(HubError, match=message):
        resolve(repo, file, "main", "http://hub.test", lambda url: pytest.fail("asked the Hub"))


def test_an_answer_that_is_no_listing_is_named():
    with pytest.raises(HubError, match="not a list of files"):
        resolve("owner/repo", "x.gguf", "main", "http://hub.test", lambda url: {"error": "Repository not found"})
