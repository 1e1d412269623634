import pytest

from apps.gateway import paths


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", "/"), ("a/b", "/a/b"), ("/a//b/", "/a/b/"), ("a b/ü", "/a b/ü")],
)
def test_it_normalises_paths(raw, expected):
    assert paths.normalise(raw) == expected


@pytest.mark.parametrize("raw", ["a/../b", "..", "a/./b", "a/\x00", "a/\nb"])
def test_it_refuses_dot_segments_and_control_characters(raw):
    with pytest.raises(paths.InvalidPath):
        paths.normalise(raw)


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


def test_it_percent_encodes_what_it_forwards():
    assert paths.encode("/a b/ü?#") == "/a%20b/%C3%BC%3F%23"
