"""HTML reports (Jinja2, inline CSS and SVG, FR/EN) and CSV exports of an analysis."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from launchkit import files
from launchkit.config import Settings
from launchkit.resources import starter_dir

LOCALES = {"fr": "fr_FR", "en": "en_US"}

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "report_title": "Launch report",
        "colon": ":",
        "compare_title": "Launches compared",
        "audience_size": "Audience at cart open",
        "entrants": "Entrants",
        "entrants_in_time": "entrants in time",
        "buyers": "Buyers",
        "conversion": "Conversion",
        "conversion_pct": "Conversion (%)",
        "gross": "Gross",
        "refunds_label": "Refunds",
        "fees": "Fees",
        "net": "Net",
        "booked": "Booked",
        "aov": "Average order",
        "refund_rate": "Refund rate",
        "per_subscriber": "Net per subscriber",
        "band_typical": "Typical (0.5-2%)",
        "band_established": "Established creators (2-4%)",
        "benchmark": "Benchmark",
        "position_below": "below the typical band",
        "position_typical": "in the typical band",
        "position_established": "in the established creators' band",
        "position_above": "above the established band",
        "ci95": "Likely range",
        "ci_sentence": "between %s and %s, 95 times out of 100",
        "ci_range": "%s to %s",
        "ci_range_points": "likely between %s and %s, 95 times out of 100",
        "ci_method_title": "How sure is this?",
        "ci_method": (
            "A launch is one draw: with another week or other people the same offer would have "
            "converted a little differently. The likely range holds the true rate 95 times out "
            "of 100 (a 95% Wilson score interval on buyers in the audience out of the audience "
            "at cart open). Small groups give wide ranges: compare groups only when their "
            "ranges do not overlap."
        ),
        "provisional_title": "Provisional",
        "by_source": "Conversion by source",
        "by_magnet": "Conversion by lead magnet",
        "by_tag": "Conversion by tag",
        "by_cohort": "Conversion by signup month",
        "by_segment": "Conversion by segment",
        "revenue": "Revenue",
        "chart_conversion": "Conversion by source, with the likely range of each",
        "chart_waterfall": "From gross to net revenue",
        "chart_refunds": "Days from purchase to refund",
        "chart_sales": "Sales over time",
        "chart_plans": "Payment plan instalments",
        "chart_scatter": "Conversion against audience size",
        "guarantee_window": "Guarantee window",
        "days": "days",
        "days_to_refund": "Days from purchase to refund",
        "cart_open": "cart open",
        "cart_close": "cart close",
        "hours_since_open": "Hours since cart open",
        "days_since_open": "Days since cart open",
        "orders": "Orders",
        "paid_on_time": "Paid",
        "recovered": "Recovered by dunning",
        "defaulted": "Defaulted",
        "instalment": "Instalment",
        "fitted_line": "Least-squares line",
        "source": "Source",
        "audience": "Audience",
        "magnet": "Lead magnet",
        "tag": "Tag",
        "cohort": "Signup month",
        "segment": "Segment",
        "refunds_title": "Refunds",
        "inside": "Inside the guarantee",
        "outside": "Outside the guarantee",
        "reasons": "Reasons",
        "median_days": "Median days to refund",
        "plans_title": "Payment plans",
        "plan_orders": "Plan orders",
        "expected": "Instalments expected",
        "paid": "paid",
        "failed": "failed",
        "completion_rate": "Completion rate",
        "recovered_share": "Recovered by dunning",
        "collected": "Collected",
        "refund_rate_plan": "Refund rate, plans",
        "refund_rate_full": "Refund rate, pay in full",
        "timing_title": "Timing",
        "last48": "Sales in the last 48 hours",
        "first24": "Sales in the first 24 hours",
        "emails_title": "Emails",
        "sent": "Sent",
        "bounced": "Bounced",
        "unsubscribed": "Unsubscribed",
        "complaints": "Complaints",
        "sales_views": "Sales-page visits",
        "checkout_starts": "Checkout starts",
        "email": "Email",
        "revenue_per_send": "Revenue per send",
        "no_email": "No email before purchase",
        "funnel_title": "Click funnel per email",
        "funnel_note": "People who clicked a link of the email, then those of them who visited"
        " the sales page, started a checkout or bought after that click. Rates: clicked of the"
        " delivered emails; the later steps of the clickers.",
        "funnel_delivered": "Delivered",
        "funnel_clicked": "Clicked",
        "funnel_clicks": "Clicks",
        "funnel_sales_page": "Sales page",
        "funnel_checkout": "Checkout started",
        "funnel_bought": "Bought",
        "mix": "Pay in full / plan",
        "pay_in_full": "Pay in full",
        "plan": "Plan",
        "empty": "No orders for this launch yet.",
        "launch": "Launch",
        "launches": "launches",
        "no_fit": "No fitted line: it takes at least three launches with an audience.",
        "provisional_short": "provisional",
        "chart_retention": "Retention by month since joining",
        "retention_all": "All members",
        "months_since_joining": "Months since joining (first payment)",
        "retained_pct": "Still members (%)",
        "retention_title": "Membership retention by launch",
        "members_joined": "Members joined",
        "monthly_churn": "Monthly churn",
        "month_n": "Month %d",
        "not_reached": "not yet",
        "retention_note": (
            "Share of a launch's paying members still members k whole months after their first "
            "payment. A month is shown once every member of the launch has reached it; "
            "comparable across these launches: %s."
        ),
        "none_yet": "none yet",
        "fit": "Fitted line",
        "slope": "Change in conversion per 1,000 more subscribers",
        "generated": "Figures in",
        "outside_audience": "Not in the audience at cart open",
        "in_audience": "in the audience",
        "on_list_outside": "on the list, outside the audience",
        "not_on_list": "not on the list",
        "pending_orders": "checkouts not paid",
        "provisional": ("The cart is still open (it closes %s): these figures will change."),
        "fees_unknown": "fees unknown for %d of %d orders (not counted)",
        "unknown": "unknown",
        "points": "percentage points",
        "more_rows": "The 25 largest groups of %d; --csv writes them all.",
        "selling_title": "Selling",
        "by_tier": "By price tier",
        "by_tier_note": (
            "The price paid in full at checkout: an early-bird or last-chance tier, or the full "
            "price (instalment plans keep the full price)."
        ),
        "tier": "Tier",
        "full_price": "Full price",
        "by_coupon": "By coupon",
        "by_coupon_note": (
            "Orders that used a code; conversion is the code's buyers in the audience over the "
            "audience at cart open."
        ),
        "coupon": "Code",
        "discount": "Discount",
        "share": "Share of orders",
        "recovery_title": "Abandoned-checkout recovery",
        "recovery_note": (
            "One email to each person who started a checkout and did not buy; an order counts as "
            "recovered when its buyer got that email before buying."
        ),
        "recovery_emails": "Recovery emails",
        "recovered_orders": "Recovered orders",
        "recovery_rate": "Emailed people who bought",
        "recovered_revenue": "Recovered, collected / net",
        "tax_title": "Tax",
        "tax_note": (
            "Stripe Tax (VAT) collected on the payments, less the tax given back with refunds."
        ),
        "tax_kept": "Tax kept",
        "net_of_tax": "Net revenue, net of tax",
    },
    "fr": {
        "report_title": "Bilan du lancement",
        "colon": " :",
        "compare_title": "Comparaison des lancements",
        "audience_size": "Audience à l'ouverture",
        "entrants": "Entrants",
        "entrants_in_time": "entrants dans les temps",
        "buyers": "Acheteurs",
        "conversion": "Conversion",
        "conversion_pct": "Conversion (%)",
        "gross": "Brut",
        "refunds_label": "Remboursements",
        "fees": "Frais",
        "net": "Net",
        "booked": "Vendu",
        "aov": "Panier moyen",
        "refund_rate": "Taux de remboursement",
        "per_subscriber": "Net par abonné",
        "band_typical": "Habituel (0,5-2 %)",
        "band_established": "Créateurs établis (2-4 %)",
        "benchmark": "Repère",
        "position_below": "sous la fourchette habituelle",
        "position_typical": "dans la fourchette habituelle",
        "position_established": "dans la fourchette des créateurs établis",
        "position_above": "au-dessus de la fourchette des créateurs établis",
        "ci95": "Fourchette probable",
        "ci_sentence": "entre %s et %s, 95 fois sur 100",
        "ci_range": "%s à %s",
        "ci_range_points": "probablement entre %s et %s, 95 fois sur 100",
        "ci_method_title": "Quelle confiance accorder à ce chiffre ?",
        "ci_method": (
            "Un lancement n'est qu'un tirage : une autre semaine ou d'autres personnes, et la "
            "même offre aurait converti un peu différemment. La fourchette probable contient le "
            "vrai taux 95 fois sur 100 (intervalle de Wilson à 95 % sur les acheteurs de "
            "l'audience rapportés à l'audience à l'ouverture). Les petits groupes ont des "
            "fourchettes larges : ne comparez deux groupes que si leurs fourchettes ne se "
            "chevauchent pas."
        ),
        "provisional_title": "Provisoire",
        "by_source": "Conversion par source",
        "by_magnet": "Conversion par aimant à prospects",
        "by_tag": "Conversion par tag",
        "by_cohort": "Conversion par mois d'inscription",
        "by_segment": "Conversion par segment",
        "revenue": "Chiffre d'affaires",
        "chart_conversion": "Conversion par source, avec la fourchette probable de chacune",
        "chart_waterfall": "Du brut au net",
        "chart_refunds": "Jours entre achat et remboursement",
        "chart_sales": "Ventes dans le temps",
        "chart_plans": "Échéances des paiements en plusieurs fois",
        "chart_scatter": "Conversion selon la taille de l'audience",
        "guarantee_window": "Période de garantie",
        "days": "jours",
        "days_to_refund": "Jours entre achat et remboursement",
        "cart_open": "ouverture",
        "cart_close": "fermeture",
        "hours_since_open": "Heures depuis l'ouverture",
        "days_since_open": "Jours depuis l'ouverture",
        "orders": "Commandes",
        "paid_on_time": "Payée",
        "recovered": "Récupérée après relance",
        "defaulted": "Impayée",
        "instalment": "Échéance",
        "fitted_line": "Droite des moindres carrés",
        "source": "Source",
        "audience": "Audience",
        "magnet": "Aimant à prospects",
        "tag": "Tag",
        "cohort": "Mois d'inscription",
        "segment": "Segment",
        "refunds_title": "Remboursements",
        "inside": "Dans la garantie",
        "outside": "Hors garantie",
        "reasons": "Motifs",
        "median_days": "Délai médian (jours)",
        "plans_title": "Paiements en plusieurs fois",
        "plan_orders": "Commandes en plusieurs fois",
        "expected": "Échéances prévues",
        "paid": "payées",
        "failed": "échouées",
        "completion_rate": "Taux de complétion",
        "recovered_share": "Récupéré après relance",
        "collected": "Encaissé",
        "refund_rate_plan": "Remboursements, plusieurs fois",
        "refund_rate_full": "Remboursements, comptant",
        "timing_title": "Chronologie",
        "last48": "Ventes des 48 dernières heures",
        "first24": "Ventes des 24 premières heures",
        "emails_title": "E-mails",
        "sent": "Envoyés",
        "bounced": "Rejetés",
        "unsubscribed": "Désinscriptions",
        "complaints": "Plaintes",
        "sales_views": "Visites de la page de vente",
        "checkout_starts": "Paiements commencés",
        "email": "E-mail",
        "revenue_per_send": "CA par envoi",
        "no_email": "Aucun e-mail avant l'achat",
        "funnel_title": "Entonnoir des clics par e-mail",
        "funnel_note": "Les personnes qui ont cliqué un lien de l'e-mail, puis celles d'entre"
        " elles qui ont vu la page de vente, commencé un paiement ou acheté après ce clic. Taux :"
        " cliqué sur les e-mails délivrés ; les étapes suivantes sur les personnes qui ont cliqué.",
        "funnel_delivered": "Délivrés",
        "funnel_clicked": "Ont cliqué",
        "funnel_clicks": "Clics",
        "funnel_sales_page": "Page de vente",
        "funnel_checkout": "Paiement commencé",
        "funnel_bought": "Ont acheté",
        "mix": "Comptant / plusieurs fois",
        "pay_in_full": "Comptant",
        "plan": "Plusieurs fois",
        "empty": "Aucune commande pour ce lancement.",
        "launch": "Lancement",
        "launches": "lancements",
        "no_fit": "Pas de droite ajustée : il faut au moins trois lancements avec une audience.",
        "provisional_short": "provisoire",
        "chart_retention": "Rétention par mois depuis l'adhésion",
        "retention_all": "Tous les membres",
        "months_since_joining": "Mois depuis l'adhésion (premier paiement)",
        "retained_pct": "Encore membres (%)",
        "retention_title": "Rétention des membres par lancement",
        "members_joined": "Membres inscrits",
        "monthly_churn": "Churn mensuel",
        "month_n": "Mois %d",
        "not_reached": "pas encore",
        "retention_note": (
            "Part des membres payants d'un lancement encore membres k mois pleins après leur "
            "premier paiement. Un mois s'affiche quand tous les membres du lancement l'ont "
            "atteint ; comparables entre ces lancements : %s."
        ),
        "none_yet": "aucun pour l'instant",
        "fit": "Droite ajustée",
        "slope": "Variation de la conversion pour 1 000 abonnés de plus",
        "generated": "Montants en",
        "outside_audience": "Hors audience à l'ouverture",
        "in_audience": "dans l'audience",
        "on_list_outside": "inscrits hors audience",
        "not_on_list": "non inscrits",
        "pending_orders": "paiements non aboutis",
        "provisional": (
            "Le panier est encore ouvert (fermeture le %s) : ces chiffres vont changer."
        ),
        "fees_unknown": "frais inconnus pour %d commandes sur %d (non comptés)",
        "unknown": "inconnu",
        "points": "points de pourcentage",
        "more_rows": "Les 25 plus grands groupes sur %d ; --csv les exporte tous.",
        "selling_title": "Ventes",
        "by_tier": "Par palier de prix",
        "by_tier_note": (
            "Le prix payé comptant au moment du paiement : un palier (lève-tôt, dernière chance) "
            "ou le plein tarif (le paiement en plusieurs fois garde le plein tarif)."
        ),
        "tier": "Palier",
        "full_price": "Plein tarif",
        "by_coupon": "Par code promo",
        "by_coupon_note": (
            "Commandes passées avec un code ; la conversion rapporte les acheteurs de l'audience "
            "qui l'ont utilisé à l'audience à l'ouverture."
        ),
        "coupon": "Code",
        "discount": "Remise",
        "share": "Part des commandes",
        "recovery_title": "Relance des paniers abandonnés",
        "recovery_note": (
            "Un e-mail à chaque personne qui a commencé un paiement sans acheter ; une commande "
            "est récupérée quand l'acheteur a reçu cet e-mail avant d'acheter."
        ),
        "recovery_emails": "E-mails de relance",
        "recovered_orders": "Commandes récupérées",
        "recovery_rate": "Personnes relancées qui ont acheté",
        "recovered_revenue": "Récupéré, encaissé / net",
        "tax_title": "Taxes",
        "tax_note": (
            "TVA collectée par Stripe Tax sur les paiements, moins la part rendue avec les "
            "remboursements."
        ),
        "tax_kept": "TVA conservée",
        "net_of_tax": "Net hors taxes",
    },
}

_FRENCH_SPACE = re.compile(r" ([:;!?»]|%(?![sd]))|(«) ")


def _french_spacing(text: str) -> str:
    """A non-breaking space before ``: ; ! ? » %`` and after ``«``, as French typesetting has it."""
    return _FRENCH_SPACE.sub(lambda m: f"\u00a0{m[1]}" if m[1] else f"{m[2]}\u00a0", text)


LABELS["fr"] = {key: _french_spacing(text) for key, text in LABELS["fr"].items()}


class Formatter:
    """Money, percentages, counts and dates in the report's language (Babel, CLDR patterns)."""

    def __init__(self, language: str, currency: str, timezone: str = "UTC"):
        self.language = "fr" if language.startswith("fr") else "en"
        self.locale = LOCALES[self.language]
        self.currency = currency
        self.tz = ZoneInfo(timezone)
        self.t = _labels(self.language)
        self._percent = Locale.parse(self.locale).percent_formats[None].pattern

    def when(self, iso: str | None) -> str:
        """``2026-12-01T09:00:00Z`` -> ``1 déc. 2026, 10:00 CET`` in the workspace timezone."""
        if not iso:
            return "—"
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(self.tz)
        text = format_datetime(moment, "d MMM y, HH:mm", locale=self.locale)
        return f"{text} {moment.tzname()}"

    def money(self, cents: float | None, currency: str | None = None) -> str:
        """``1 234,56 €`` / ``€1,234.56``."""
        if cents is None:
            return "—"
        value = Decimal(round(cents)) / 100
        return format_currency(value, currency or self.currency, locale=self.locale)

    def pct(self, rate: float | None, digits: int = 1) -> str:
        """``2,9 %`` (non-breaking space) / ``2.9%``: the locale's pattern, fixed decimals."""
        if rate is None:
            return "—"
        head, zero, tail = self._percent.rpartition("0")
        pattern = f"{head}{zero}.{'0' * digits}{tail}" if digits else self._percent
        return format_percent(rate, format=pattern, locale=self.locale)

    def num(self, value: float | None) -> str:
        """``1 234`` (non-breaking) / ``1,234``."""
        return "—" if value is None else format_decimal(value, locale=self.locale)

    def decimal(self, value: float, digits: int = 1) -> str:
        """A plain number with at most ``digits`` decimals, for chart axes: ``2,5`` / ``2.5``."""
        return format_decimal(round(value, digits), locale=self.locale)

    def ci_words(self, low: float | None, high: float | None, digits: int = 1) -> str:
        """``entre 2,5 et 3,4 %, 95 fois sur 100`` (FR) or ``between 2.5 and 3.4%, ...`` (EN)."""
        if low is None or high is None:
            return "—"
        return self.t["ci_sentence"] % self._pct_pair(low, high, digits)

    def ci_range(self, low: float | None, high: float | None, digits: int = 1) -> str:
        """``2,5 à 3,4 %`` / ``2.5 to 3.4%``: the likely range in a table cell."""
        if low is None or high is None:
            return "—"
        return self.t["ci_range"] % self._pct_pair(low, high, digits)

    def _pct_pair(self, low: float, high: float, digits: int) -> tuple[str, str]:
        """The low end as a bare number, the high end with its percent sign."""
        high_text = self.pct(high, digits)
        low_text = format_decimal(low * 100, format=f"#,##0.{'0' * digits}", locale=self.locale)
        return low_text, high_text

    def reason(self, code: str) -> str:
        """A Stripe refund reason in words; an unknown code is shown as it is."""
        return REFUND_REASONS[self.language].get(code, code)


REFUND_REASONS = {
    "en": {
        "requested_by_customer": "requested by the customer",
        "duplicate": "duplicate payment",
        "fraudulent": "fraudulent payment",
        "expired_uncaptured_charge": "payment never captured",
        "unspecified": "no reason given",
    },
    "fr": {
        "requested_by_customer": "à la demande du client",
        "duplicate": "paiement en double",
        "fraudulent": "paiement frauduleux",
        "expired_uncaptured_charge": "paiement jamais encaissé",
        "unspecified": "aucun motif indiqué",
    },
}
OUTCOME_TAGS = frozenset({"buyer", "refunded"})
OUTCOME_TAG_PREFIXES = ("buyer:",)


def is_outcome_tag(tag: str) -> bool:
    """Tags launchkit itself adds on purchase or refund: an outcome, not a way in."""
    return tag in OUTCOME_TAGS or tag.startswith(OUTCOME_TAG_PREFIXES)


def entry_tags(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversion-by-tag rows without the outcome tags (``buyer`` would convert at 100%)."""
    return [row for row in rows if not is_outcome_tag(str(row["tag"]))]


def _environment(templates_dir: Path | None) -> Environment:
    folders = [str(p) for p in (templates_dir, starter_dir("templates")) if p and p.is_dir()]
    env = Environment(
        loader=FileSystemLoader(folders),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
    )
    env.filters["breakable"] = breakable
    return env


_BREAK_AFTER = re.compile(r"([:/_.@])(?=\S)")


def breakable(label: object) -> str:
    """A zero-width space after ``: / _ . @`` so a name like ``magnet:checklist`` can wrap in a
    phone's narrow first column without breaking inside a word."""
    return _BREAK_AFTER.sub("\\1\u200b", str(label))


def _labels(language: str) -> dict[str, str]:
    return LABELS["fr"] if language.startswith("fr") else LABELS["en"]


def report_charts(result: dict[str, Any], t: dict[str, str], fmt: Formatter) -> dict[str, dict]:
    """Every chart of the launch report, as SVG strings (missing data: no chart)."""
    from launchkit.analysis import charts  # matplotlib: imported only when drawing

    found: dict[str, dict] = {}
    if any(row["audience"] for row in result["by_source"]):
        bands = result["benchmark"]["bands"]
        found["conversion"] = charts.conversion_chart(
            result["by_source"], "source", bands, t, fmt.decimal
        )
    if result["orders"]:
        found["waterfall"] = charts.waterfall_chart(result, t, fmt.money, fmt.decimal)
        found["sales"] = charts.sales_chart(result["timing"], t)
    if result["refunds"]["count"]:
        found["refunds"] = charts.refund_chart(result["refunds"], t)
    if result["payment_plans"]["by_instalment"]:
        found["plans"] = charts.plan_chart(result["payment_plans"], t)
    membership = result.get("membership")
    if membership and membership["retention_curve"]:
        found["retention"] = charts.retention_chart(
            membership, t, fmt.decimal, lambda rate: fmt.pct(rate, 0)
        )
    return found


def email_subjects(result: dict[str, Any], settings: Settings) -> dict[int, str]:
    """Each email's subject rendered as the sender renders it, with the launch's variables.

    Personal variables show as ``[first_name]`` (and ``[creator_name]`` while the workspace has
    no sender name); a subject that does not render stays raw (``render.shown``).
    """
    from launchkit.render.shown import ShownText
    from launchkit.sequences.context import LaunchData

    info = result["launch"]
    offer = info["offers"][0] if info["offers"] else {}
    launch = LaunchData(
        info["slug"],
        info["product"],
        result["currency"],
        _moment(info["cart_open"]),
        _moment(info["cart_close"]),
        offer.get("slug"),
        offer.get("price_cents"),
        guarantee_days=offer.get("guarantee_days", 30),
    )
    shown = ShownText(settings, launch)
    return {
        row["email_id"]: shown(row["sequence"], row["subject"])
        for row in result["emails"]["per_email"]
    }


def _moment(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else None


def render_report(
    result: dict[str, Any],
    *,
    language: str = "en",
    timezone: str = "UTC",
    templates_dir: Path | None = None,
    settings: Settings | None = None,
) -> str:
    """The self-contained HTML report of one analysis (times shown in ``timezone``).

    ``settings`` (the workspace's) give email subjects their sender name and email folder.
    """
    t = _labels(language)
    fmt = Formatter(language, result["currency"], timezone)
    if settings is None:
        settings = Settings(
            workspace=Path("."),
            language=fmt.language,
            timezone=timezone,
            emails_dir=starter_dir("emails"),
        )
    template = _environment(templates_dir).get_template("report.html")
    return template.render(
        r=result,
        t=t,
        f=fmt,
        lang=fmt.language,
        charts=report_charts(result, t, fmt),
        subjects=email_subjects(result, settings),
        tags=entry_tags(result["by_tag"]),
    )


def render_workspace_report(result: dict[str, Any], settings: Settings) -> str:
    """``render_report`` in the workspace's language, timezone, templates and sender."""
    return render_report(
        result,
        language=settings.language,
        timezone=settings.timezone,
        templates_dir=settings.templates_dir,
        settings=settings,
    )


def render_compare(
    result: dict[str, Any], *, language: str = "en", templates_dir: Path | None = None
) -> str:
    """The self-contained HTML comparison of several launches."""
    from launchkit.analysis import charts  # matplotlib: imported only when drawing

    t = _labels(language)
    fmt = Formatter(language, "EUR")
    measured = [row for row in result["launches"] if row["audience_size"] > 0]
    chart = charts.scatter_chart(measured, result["fit"], t, fmt.decimal) if measured else None
    template = _environment(templates_dir).get_template("compare.html")
    return template.render(c=result, t=t, f=fmt, lang=fmt.language, chart=chart)


CSV_TABLES = {
    "by_source": lambda r: r["by_source"],
    "by_magnet": lambda r: r["by_magnet"],
    "by_tag": lambda r: r["by_tag"],
    "by_cohort": lambda r: r["by_cohort"],
    "by_segment": lambda r: r["by_segment"],
    "emails": lambda r: r["emails"]["per_email"],
    "click_funnel": lambda r: r.get("click_funnel", []),
    "sales_per_hour": lambda r: r["timing"]["per_hour"],
    "sales_per_day": lambda r: r["timing"]["per_day"],
    "refund_days": lambda r: r["refunds"]["histogram"],
    "refund_reasons": lambda r: r["refunds"]["reasons"],
    "plan_instalments": lambda r: r["payment_plans"]["by_instalment"],
    "by_tier": lambda r: r.get("by_tier") or [],
    "by_coupon": lambda r: r.get("by_coupon") or [],
}
GROUP_COLUMNS = [
    "orders",
    "buyers",
    "conversion_rate",
    "share_of_orders",
    "revenue_cents",
    "refunded_cents",
    "net_revenue_cents",
]
EMPTY_COLUMNS = {
    "by_tier": ["tier", *GROUP_COLUMNS],
    "by_coupon": ["coupon", *GROUP_COLUMNS, "discount_cents"],
}
SELLING_FIELDS = ("tax_cents", "revenue_net_of_tax_cents")
RECOVERY_FIELDS = {  # summary.csv column: key of ``recovery``
    "recovery_emails_sent": "emails_sent",
    "recovered_orders": "recovered_orders",
    "recovery_rate": "recovery_rate",
    "recovered_revenue_cents": "recovered_revenue_cents",
    "recovered_net_revenue_cents": "recovered_net_revenue_cents",
}
SUMMARY_FIELDS = (
    "currency",
    "audience_size",
    "buyers",
    "conversion_rate",
    "gross_revenue_cents",
    "refunded_cents",
    "fees_cents",
    "net_revenue_cents",
    "booked_revenue_cents",
    "average_order_cents",
    "refund_rate",
    "net_revenue_per_subscriber_cents",
    "provisional",
)


def _write_rows(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    files.write_csv(path, columns, ([row.get(column, "") for column in columns] for row in rows))


def write_csv(result: dict[str, Any], directory: Path) -> list[Path]:
    """One CSV per table of the analysis plus ``summary.csv``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "summary.csv"]
    summary = {"launch": result["launch"]["slug"], **{k: result[k] for k in SUMMARY_FIELDS}}
    summary.update({k: result.get(k, 0) for k in SELLING_FIELDS})
    recovery = result.get("recovery") or {}
    summary.update({column: recovery.get(key, 0) for column, key in RECOVERY_FIELDS.items()})
    _write_rows(written[0], [summary], list(summary))
    for name, pick in CSV_TABLES.items():
        rows = pick(result)
        columns = list(rows[0]) if rows else _empty_columns(name)
        path = directory / f"{name}.csv"
        _write_rows(path, rows, columns)
        written.append(path)
    return written


def _empty_columns(name: str) -> list[str]:
    if name in EMPTY_COLUMNS:
        return EMPTY_COLUMNS[name]
    if name.startswith("by_"):
        key = name.removeprefix("by_")
        return [key, "audience", "buyers", "conversion_rate", "ci95_low", "ci95_high"]
    return ["empty"]
