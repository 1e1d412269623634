import pytest
from django.core.exceptions import ValidationError

from apps.gateway.validators import validate_base_url, validate_path_prefix


@pytest.mark.parametrize("url", ["http://svc.internal", "https://10.0.0.5:8443/base", "http://[::1]:8080/"])
def test_it_accepts_http_and_https_base_urls(url):
    validate_base_url(url)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://svc", "invalid_scheme"),
        ("http://", "missing_host"),
        ("http://user:pw@svc", "userinfo"),
        ("http://svc/?a=1", "query_or_fragment"),
        ("http://svc/#top", "query_or_fragment"),
        ("http://svc:99999", "invalid_port"),
        ("http://svc:0", "invalid_port"),
    ],
)
def test_it_refuses_unsafe_base_urls(url, code):
    with pytest.raises(ValidationError) as info:
        validate_base_url(url)
    assert info.value.code == code


@pytest.mark.parametrize("prefix", ["api", "/a/../b", "/./x"])
def test_it_refuses_bad_path_prefixes(prefix):
    with pytest.raises(ValidationError):
        validate_path_prefix(prefix)
