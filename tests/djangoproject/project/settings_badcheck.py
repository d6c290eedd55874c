"""The test project with a setting a system check refuses (staticfiles.E001)."""

from project.settings import *  # noqa: F403

STATICFILES_DIRS = "assets"
