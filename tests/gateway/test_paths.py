import pytest

from apps.gateway import paths
from tests.hostile_inputs import AMBIGUOUS_PATHS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "/"),
        ("a/b", "/a/b"),
        ("/a//b/", "/a/b/"),
        ("/a%20b/%C3%BC", "/a b/ü"),
        ("/%7Euser", "/~user"),
        ("/a=b,c:d@e", "/a=b,c:d@e"),
        ("/caf%C3%A9/%E6%97%A5%E6%9C%AC", "/café/日本"),
    ],
)
def test_it_decodes_once_and_normalises(raw, expected):
    assert paths.normalise(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "/a/../b",
        "/..",
        "/a/./b",
        "/%2e%2e/b",
        "/%2E%2e/b",
        "/a/%2f/b",
        "/a%2Fb",
        "/a%5cb",
        "/a\\b",
        "/%00",
        "/a%0d%0aSet-Cookie:x",
        "/%c0%ae%c0%ae/",
        "/%ff",
        "/%252e%252e/",
        "/a%25",
    ],
)
def test_it_refuses_what_could_be_read_two_ways(raw):
    with pytest.raises(paths.InvalidPath):
        paths.normalise(raw)


@pytest.mark.parametrize("raw", AMBIGUOUS_PATHS)
def test_it_refuses_what_common_upstreams_read_as_another_path(raw):
    with pytest.raises(paths.InvalidPath):
        paths.normalise(raw)


def test_the_gateway_suffix_comes_from_the_raw_uri():
    assert paths.gateway_suffix("/gw/crm/a/%2e%2e/b?x=1", "crm") == "/a/%2e%2e/b"
    assert paths.gateway_suffix("/gw/crm", "crm") == "/"
    with pytest.raises(paths.InvalidPath):
        paths.gateway_suffix("/gw/crm2/x", "crm")


@pytest.mark.parametrize(
    ("path", "prefix", "matches"),
    [
        ("/api", "/api", True),
        ("/api/x", "/api", True),
        ("/api/x", "/api/", True),
        ("/apix", "/api", False),
        ("/other", "/api", False),
        ("/anything", "/", True),
    ],
)
def test_prefixes_match_on_segment_boundaries(path, prefix, matches):
    assert paths.matches_prefix(path, prefix) is matches


@pytest.mark.parametrize(
    ("path", "pattern", "matches"),
    [
        ("/v1/users/42", "/v1/users/*", True),
        ("/v1/users/42/keys", "/v1/users/*", False),
        ("/v1/users/42/keys", "/v1/**", True),
        ("/v1/users/42", "/v?/users/*", True),
        ("/v1/users.json", "/v1/*.json", True),
        ("/v1/a.b", "/v1/a?b", True),
        ("/v1/a/b", "/v1/a?b", False),
    ],
)
def test_globs_match_whole_paths(path, pattern, matches):
    assert paths.matches_glob(path, pattern) is matches


def test_it_percent_encodes_what_it_forwards():
    assert paths.encode("/a b/ü?#") == "/a%20b/%C3%BC%3F%23"
