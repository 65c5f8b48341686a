"""HAProxy 2.6's answers to the ssl commands, read as success or error (tls/runtime.ssl_answer_error)."""

from __future__ import annotations

from haplane.tls.runtime import ssl_answer_error

ADD = "add ssl crt-list /s/crt-list /s/certs/api.pem"


def test_add_to_a_crt_list_is_a_success_with_a_dot_for_each_bind_using_it() -> None:
    # one bind: one dot; a crt-list shared by the HTTPS frontend and a Thalassa TLS frontend: two (this was read
    # as a refusal, and the certificate held, never served)
    for dots in (".", "..", "..."):
        answer = f"Inserting certificate '/s/certs/api.pem' in crt-list '/s/crt-list'{dots}\nSuccess!\n"
        assert ssl_answer_error(ADD, answer) is None, dots


def test_add_refused_or_for_another_certificate_is_an_error() -> None:
    assert ssl_answer_error(ADD, "certificate '/s/certs/api.pem' does not exist!\n") is not None
    other = "Inserting certificate '/s/certs/web.pem' in crt-list '/s/crt-list'.\nSuccess!\n"
    assert "not /s/certs/api.pem" in (ssl_answer_error(ADD, other) or "")
