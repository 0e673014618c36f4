"""API tokens: made, verified, listed, revoked and expired; the CLI verbs; corral up's admin token."""
from __future__ import annotations

import hashlib
import os
import stat

import pytest

from common import auth
from common.config import load_config
from common.db import open_and_migrate
from common.errors import ConfigError, NotFound, ValidationError
from common.models import Token, database_proxy
from corral.cli import main as corral_main
from corral.embedded import ensure_admin_token

NOW = 1_700_000_000.0


@pytest.fixture
def db(tmp_path):
    database = open_and_migrate(f"sqlite:///{tmp_path}/auth.db")
    with database.connection_context():
        yield database
    database.close()


def test_a_new_token_is_stored_only_as_its_sha256_and_verifies(db):
    row, secret = auth.create_token("alice", ["submit"], now=NOW)
    assert secret.startswith("corral_") and len(secret) >= 40
    stored = Token.get_by_id(row.id)
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(list(Token.select().dicts()))
    principal = auth.authenticate(secret, now=NOW + 1)
    assert principal.name == "alice" and principal.token_id == row.id
    assert principal.allows("submit") and principal.allows("read")
    assert not principal.allows("operate") and not principal.allows("admin")
    assert Token.get_by_id(row.id).last_used_at == NOW + 1


def test_two_tokens_never_share_a_secret(db):
    secrets_made = {auth.create_token(f"t{i}", ["read"])[1] for i in range(20)}
    assert len(secrets_made) == 20


def test_wrong_malformed_and_oversized_tokens_do_not_verify(db):
    _, secret = auth.create_token("alice", ["read"])
    for presented in ("", secret[:-1], secret + "x", "corral_" + "A" * 43, "x" * 5000, secret.upper()):
        assert auth.authenticate(presented) is None


def test_scopes_imply_read_and_admin_implies_everything(db):
    assert auth.effective_scopes(["admin"]) == frozenset(auth.SCOPES)
    assert auth.effective_scopes(["operate"]) == {"operate", "read"}
    assert auth.effective_scopes(["agent"]) == {"agent"}
    assert auth.parse_scopes("submit, read") == ["read", "submit"]
    for bad in ([], ["root"], "", 7, ["read"] * 6):
        with pytest.raises(ValidationError) as caught:
            auth.parse_scopes(bad)
        assert caught.value.field == "scopes"


def test_a_revoked_token_stops_working_and_revoking_again_changes_nothing(db):
    row, secret = auth.create_token("ci", ["operate"])
    auth.revoke_token(row.id, now=NOW)
    assert auth.authenticate(secret) is None
    assert auth.revoke_token(str(row.id), now=NOW + 50).revoked_at == NOW
    assert auth.token_body(Token.get_by_id(row.id))["state"] == "revoked"


def test_a_token_expires_at_its_time(db):
    row, secret = auth.create_token("temp", ["read"], expires_in_s=60, now=NOW)
    assert auth.authenticate(secret, now=NOW + 59) is not None
    assert auth.authenticate(secret, now=NOW + 60) is None
    assert auth.token_state(row, NOW + 61) == "expired"
    with pytest.raises(ValidationError, match="expires_in_s"):
        auth.create_token("never", ["read"], expires_in_s=0)


def test_tokens_are_found_by_id_or_unambiguous_name(db):
    first, _ = auth.create_token("farm-bot", ["read"])
    assert auth.find_token("farm-bot").id == first.id
    auth.create_token("farm-bot", ["read"])
    with pytest.raises(ValidationError, match="give the id"):
        auth.find_token("farm-bot")
    with pytest.raises(NotFound):
        auth.find_token(999)
    with pytest.raises(NotFound):
        auth.find_token("nobody")


def test_listing_shows_no_secret_nor_hash_and_can_hide_inactive_tokens(db):
    auth.create_token("a", ["read"])
    gone, _ = auth.create_token("b", ["read"])
    auth.revoke_token(gone.id)
    bodies = [auth.token_body(row) for row in auth.list_tokens()]
    assert [b["name"] for b in bodies] == ["a", "b"]
    assert all("token_hash" not in b and "token" not in b for b in bodies)
    assert [row.name for row in auth.list_tokens(include_inactive=False)] == ["a"]


def test_the_admin_token_from_the_environment_is_accepted_as_admin(db):
    principal = auth.authenticate("env-admin-token-123456", admin_token="env-admin-token-123456")
    assert principal.allows("admin") and principal.allows("agent") and principal.token_id is None
    assert auth.authenticate("env-admin-token-12345", admin_token="env-admin-token-123456") is None
    with pytest.raises(ConfigError, match="CORRAL_ADMIN_TOKEN"):
        load_config({"CORRAL_ADMIN_TOKEN": "short"})
    assert "env-admin" not in repr(load_config({"CORRAL_ADMIN_TOKEN": "env-admin-token-123456"}))


# ---------------------------------------------------------------- corral token ...


@pytest.fixture
def cli_db(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    yield
    database_proxy.close()


def test_corral_token_create_list_revoke_work_on_the_database(cli_db, capsys):
    assert corral_main(["token", "create", "--name", "alice", "--scope", "submit", "--expires-in", "2d"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("corral_")
    assert corral_main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "submit" in listing and secret not in listing
    assert corral_main(["token", "revoke", "alice"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert corral_main(["token", "list"]) == 0
    assert "alice" not in capsys.readouterr().out  # inactive tokens need --all
    assert corral_main(["token", "list", "--all", "--json"]) == 0
    assert '"state": "revoked"' in capsys.readouterr().out
    with database_proxy.connection_context():
        assert auth.authenticate(secret) is None


def test_corral_token_refuses_unknown_scopes_and_names_with_a_sentence(cli_db, capsys):
    assert corral_main(["token", "create", "--name", "x", "--scope", "root"]) == 1
    assert "scopes" in capsys.readouterr().err
    assert corral_main(["token", "revoke", "nobody"]) == 1
    with pytest.raises(SystemExit):
        corral_main(["token", "create", "--name", "x", "--scope", "read", "--expires-in", "soon"])


# ---------------------------------------------------------------- corral up's admin token


def test_corral_up_makes_a_private_admin_token_once_and_reuses_it(tmp_path):
    config = load_config({}, data_dir=str(tmp_path / "var"))
    os.makedirs(config.data_dir)
    open_and_migrate(config.resolved_database_url)
    secret = ensure_admin_token(config)
    path = tmp_path / "var" / "admin.token"
    assert path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with database_proxy.connection_context():
        assert auth.authenticate(secret).allows("admin")
    assert ensure_admin_token(config) is None  # second start: the same token
    assert path.read_text().strip() == secret
    path.write_text("corral_stale\n")  # e.g. the database was replaced
    fresh = ensure_admin_token(config)
    assert fresh and fresh != secret and path.read_text().strip() == fresh
    database_proxy.close()


def test_corral_up_makes_no_token_file_when_the_admin_token_is_in_the_environment(tmp_path):
    config = load_config({"CORRAL_ADMIN_TOKEN": "env-admin-token-123456"}, data_dir=str(tmp_path))
    open_and_migrate(config.resolved_database_url)
    assert ensure_admin_token(config) is None
    assert not (tmp_path / "admin.token").exists()
    database_proxy.close()


def test_the_cli_sends_corral_token_or_else_the_token_file_of_the_data_directory(tmp_path, monkeypatch):
    from corral.client import find_token

    monkeypatch.delenv("CORRAL_TOKEN", raising=False)
    monkeypatch.delenv("CORRAL_DATA_DIR", raising=False)
    assert find_token(str(tmp_path)) is None
    (tmp_path / "admin.token").write_text("corral_from_file\n")
    assert find_token(str(tmp_path)) == "corral_from_file"
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path))
    assert find_token(None) == "corral_from_file"
    monkeypatch.setenv("CORRAL_TOKEN", "corral_from_env")
    assert find_token(str(tmp_path)) == "corral_from_env"
