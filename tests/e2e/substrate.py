"""The example config, with the local Substrate chain ``dot-a``, for end-to-end tests."""

from __future__ import annotations

from tests.e2e.conftest import EXAMPLE_CONFIG

DOT_A_DOMAIN = 3000
_SUBMITTER_KEY = 'submitter_key = { env = "RELAYER_KEY_DOT_A" }'


def config_with_dot_a(*, destination: bool = True) -> str:
    """``destination=False`` leaves dot-a without a submitter key (an origin only)."""
    text = EXAMPLE_CONFIG.read_text()
    assert 'name = "dot-a"' in text and _SUBMITTER_KEY in text
    if not destination:
        start = text.index('name = "dot-a"')
        at = text.index(_SUBMITTER_KEY, start)
        text = text[:at] + "# no submitter key" + text[at + len(_SUBMITTER_KEY) :]
    return text
