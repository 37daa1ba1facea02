"""The API key: where it is looked up, in which order, and that it never prints itself."""

import logging

from talkie.config.credentials import KeyProblem, Secret, load_api_key

KEY = "AIzaSy-test-0123456789abcdefghijklmnopq"


def test_systemd_credential_comes_first(tmp_path):
    (tmp_path / "gemini-api-key").write_text(KEY + "\n")
    other = tmp_path / "file"
    other.write_text("other")
    key = load_api_key(str(other), env={"CREDENTIALS_DIRECTORY": str(tmp_path),
                                        "GEMINI_API_KEY": "env"})
    assert isinstance(key, Secret) and key.reveal() == KEY
    assert key.source == "credential gemini-api-key"


def test_then_the_key_file_then_the_environment(tmp_path):
    path = tmp_path / "api-key"
    path.write_text(KEY)
    assert load_api_key(str(path), env={"GEMINI_API_KEY": "env"}).reveal() == KEY
    assert load_api_key("", env={"GOOGLE_API_KEY": "g"}).reveal() == "g"
    assert load_api_key("", env={"GEMINI_API_KEY": "a", "GOOGLE_API_KEY": "b"}).reveal() == "a"
    assert load_api_key(str(tmp_path / "missing"), env={"GEMINI_API_KEY": "e"}).source == \
        "$GEMINI_API_KEY"


def test_no_key_says_where_it_looked_and_what_to_do(tmp_path):
    (tmp_path / "gemini-api-key").write_text("  \n")
    problem = load_api_key(str(tmp_path / "nope"), env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert isinstance(problem, KeyProblem)
    assert "gemini-api-key (empty)" in problem.message
    assert "nope (missing)" in problem.message
    assert "/etc/talkie/api-key" in problem.message


def test_the_key_never_prints_itself(caplog):
    secret = Secret(KEY, "test")
    logger = logging.getLogger("talkie.test")
    with caplog.at_level(logging.DEBUG, logger="talkie"):
        logger.info("key %s %r", secret, secret)
        logger.info("%s", {"key": secret})
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError:
            logger.exception("boom")
    assert KEY not in caplog.text and "hidden" in caplog.text
    assert secret.redact(f"url?key={KEY}&x") == "url?key=***&x"
