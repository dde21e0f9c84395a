"""The availability-preserving policy, as a pure function."""

from liveinference import ModelMetadata
from liveinference.refresh.policy import version_to_load
from liveinference.refresh.sources import Version


def _version(path, mtime=1.0):
    return Version(ModelMetadata(path, "m"), (path, mtime, 10))


def test_a_new_version_is_loaded():
    offered = _version("/m/v2.pkl")
    assert version_to_load(offered, ("/m/v1.pkl", 1.0, 10), set()) is offered


def test_nothing_offered_keeps_serving():
    assert version_to_load(None, None, set()) is None


def test_the_serving_version_is_not_reloaded():
    offered = _version("/m/v2.pkl")
    assert version_to_load(offered, offered.fingerprint, set()) is None


def test_a_failed_version_is_retried_only_when_it_changes():
    failed = _version("/m/v2.pkl", mtime=1.0)
    assert version_to_load(failed, None, {failed.fingerprint}) is None
    rewritten = _version("/m/v2.pkl", mtime=2.0)
    assert version_to_load(rewritten, None, {failed.fingerprint}) is rewritten
