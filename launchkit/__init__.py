"""launchkit: plan, run and analyze a course launch from the terminal, with data you own."""

from launchkit.config import Settings, load_settings
from launchkit.errors import LaunchkitError

__version__ = "0.1.0"

__all__ = ["LaunchkitError", "Settings", "__version__", "load_settings"]
