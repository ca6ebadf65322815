"""Identity tests import the user helpers through this module."""

from ..conftest import PASSWORD, MakeUser, TestUser  # type: ignore[import-not-found]

__all__ = ["PASSWORD", "MakeUser", "TestUser"]
