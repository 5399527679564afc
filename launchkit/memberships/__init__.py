"""Memberships: recurring offers, the member's lifecycle from Stripe's events, the member's
own cancellation, and the membership emails.

- ``offers``: membership prices (monthly, yearly), trial, founding price, the Checkout Session
  in subscription mode while the doors are open;
- ``lifecycle``: dated facts from Stripe's events, the state derived from them in any order,
  ``membership_entitled``;
- ``account``: the member's side (magic link, cancel at period end) and the guarantee refund;
- ``notify``: welcome, renewal reminder, failed renewal, trial ending, cancellation, win-back;
- ``reminders``: the time-based ones (renewal reminder, trial ending) due from stored facts and
  sent by ``launchkit send`` / ``launchkit run`` on a schedule, once each.
"""

from __future__ import annotations

import launchkit.checkout  # noqa: F401  (first: checkout.events imports the lifecycle handlers)
from launchkit.memberships.lifecycle import (
    ENTITLED,
    derive,
    find_membership,
    membership_entitled,
    membership_for_order,
    request_cancel,
)
from launchkit.memberships.offers import (
    MembershipChoice,
    add_membership_offer,
    is_membership,
    membership_as_dict,
    membership_choices,
    membership_prices,
    parse_membership,
    resolve_interval,
    start_membership_checkout,
)

__all__ = [
    "ENTITLED", "MembershipChoice", "add_membership_offer", "derive", "find_membership",
    "is_membership", "membership_as_dict", "membership_choices", "membership_entitled",
    "membership_for_order", "membership_prices", "parse_membership", "request_cancel",
    "resolve_interval", "start_membership_checkout",
]  # fmt: skip
