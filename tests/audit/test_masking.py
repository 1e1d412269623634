from apps.audit.masking import MASK, mask_query


def test_it_masks_sensitive_parameters_and_keeps_the_rest():
    masked = mask_query("page=2&api_key=abc&access_token=xyz&q=hello")
    assert "abc" not in masked and "xyz" not in masked
    assert masked == f"page=2&api_key={MASK}&access_token={MASK}&q=hello"


def test_an_empty_query_stays_empty():
    assert mask_query("") == ""
