"""Subjects and preheaders as people see them in listings (schedule, report): rendered with
the launch's variables as the sender renders them, personal variables shown as
``[first_name]``. One implementation for every place that shows them."""

from __future__ import annotations

from typing import Any

from launchkit.config import Settings

PERSONAL_VARIABLES = ("first_name", "last_name", "email", "magnet_title", "checkout_url")


class ShownText:
    """Renders listing texts for one launch (``LaunchData``), one environment for all."""

    def __init__(self, settings: Settings, launch: Any):
        from launchkit.render import make_environment

        self.settings, self.launch = settings, launch
        self.env = make_environment(settings)
        self.values: dict[str, dict[str, Any]] = {}

    def _values(self, sequence: str) -> dict[str, Any]:
        from launchkit.sequences.context import launch_context, sequence_language

        language = sequence_language(sequence, None, self.settings)
        if language not in self.values:
            values = launch_context(self.settings, self.launch, {}, language=language)
            values.update({name: f"[{name}]" for name in PERSONAL_VARIABLES})
            values["creator_name"] = values["creator_name"] or "[creator_name]"
            self.values[language] = values
        return self.values[language]

    def __call__(self, sequence: str, text: str | None) -> str:
        """``text`` rendered on one line; a text that does not render stays raw."""
        import jinja2

        from launchkit.render import SecurityError

        if not text:
            return ""
        try:
            shown = self.env.from_string(text).render(self._values(sequence))
        except (jinja2.TemplateError, SecurityError, ArithmeticError, TypeError, ValueError):
            shown = text
        return " ".join(shown.split())
