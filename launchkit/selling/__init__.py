"""What launches sell with: dated price tiers, coupons, abandoned-checkout recovery, EU VAT.

- ``tiers``: early-bird / last-chance prices of an offer's pay-in-full option, by date;
- ``coupons``: Stripe coupons + promotion codes, accepted on Checkout or prefilled from a link;
- ``orders``: what a Checkout Session event tells about the tier, the coupon and the tax;
- ``recovery``: one recovery email per abandoned checkout (claimed before it is sent);
- ``promises``: the rehearsal checks for these (no recovery after close, no expired tier).

Submodules are imported where they are used (``launchkit.checkout`` imports ``tiers``, and
``coupons`` imports the Stripe adapter), so this package imports none of them.
"""
