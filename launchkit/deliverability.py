"""Is the sender's domain set up to reach the inbox? SPF, DKIM and DMARC records, over DNS.

``check_sender_domain`` looks the three records up with dnspython and returns findings
(``ok``, ``warning``, ``error``) that say exactly which record to add or fix. When DNS does not
answer (offline, timeout) it says it could not check: it never guesses. ``launchkit doctor``
prints these findings; tests point ``resolver`` at a DNS server on a loopback port.
"""

from __future__ import annotations

import re

import dns.exception
import dns.name
import dns.resolver

from launchkit.findings import Finding, Level

TIMEOUT = 2.0  # seconds for each whole lookup


class _NoAnswer(Exception):
    "DNS did not answer (timeout, no server reachable, SERVFAIL)."


def make_resolver(timeout: float = TIMEOUT) -> dns.resolver.Resolver:
    """The system's resolver with a short timeout."""
    resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = timeout
    return resolver


def check_sender_domain(
    domain: str,
    *,
    resolver: dns.resolver.Resolver | None = None,
    dkim_selector: str | None = None,
) -> list[Finding]:
    """SPF, DKIM (when a selector is given) and DMARC findings for ``domain``, in that order."""
    resolver = resolver or make_resolver()
    domain = domain.strip().rstrip(".").lower()
    findings = []
    for check, run in (
        ("spf", lambda: _check_spf(resolver, domain)),
        ("dkim", lambda: _check_dkim(resolver, domain, dkim_selector)),
        ("dmarc", lambda: _check_dmarc(resolver, domain)),
    ):
        try:
            findings.append(run())
        except _NoAnswer as e:
            findings.append(
                Finding(
                    check,
                    Level.WARNING,
                    f"Could not check {check.upper()} for {domain}: DNS did not answer ({e}).",
                )
            )
    return findings


def _txt(resolver: dns.resolver.Resolver, name: str) -> list[str] | None:
    """The TXT strings at ``name`` (each record's chunks joined); None when the name does not
    exist; raises _NoAnswer when DNS does not answer."""
    try:
        answer = resolver.resolve(dns.name.from_text(name), "TXT", search=False)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    except dns.exception.Timeout:
        raise _NoAnswer("timeout") from None
    except (dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as e:
        raise _NoAnswer(type(e).__name__) from None
    except dns.exception.DNSException as e:
        raise _NoAnswer(str(e)[:80] or type(e).__name__) from None
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]


def _tagged(records: list[str], prefix: str) -> list[str]:
    return [r.strip() for r in records if r.strip().lower().startswith(prefix)]


def _check_spf(resolver: dns.resolver.Resolver, domain: str) -> Finding:
    records = _txt(resolver, domain)
    add = f'add TXT {domain} "v=spf1 include:<your relay\'s SPF domain> ~all"'
    if records is None:
        return Finding("spf", Level.ERROR, f"{domain} does not exist in DNS; {add}.")
    spf = _tagged(records, "v=spf1")
    if not spf:
        return Finding("spf", Level.ERROR, f"No SPF record for {domain}: {add}.")
    if len(spf) > 1:
        return Finding(
            "spf",
            Level.ERROR,
            f"{domain} has {len(spf)} SPF records (receivers then ignore SPF): merge them into "
            f'one TXT record, e.g. "v=spf1 include:... include:... ~all".',
        )
    if re.search(r"(?i)(^|\s)\+?all\s*$", spf[0]):
        return Finding(
            "spf",
            Level.ERROR,
            f'SPF record of {domain} ends with "+all" (anyone may send as {domain}): '
            f'end it with "~all" or "-all": "{spf[0]}".',
        )
    return Finding("spf", Level.OK, f'SPF record of {domain}: "{spf[0]}".')


def _check_dkim(resolver: dns.resolver.Resolver, domain: str, selector: str | None) -> Finding:
    if not selector:
        return Finding(
            "dkim",
            Level.WARNING,
            "No DKIM selector to check: set [sender] dkim_selector in launchkit.toml (the one "
            "your relay signs with, or your own with LAUNCHKIT_DKIM_PRIVATE_KEY).",
        )
    name = f"{selector}._domainkey.{domain}"
    add = f'add TXT {name} "v=DKIM1; k=rsa; p=<your public key, base64>"'
    records = _txt(resolver, name)
    keys = [r for r in records or [] if re.search(r"(^|;)\s*p=", r)]
    if not keys:
        return Finding("dkim", Level.ERROR, f"No DKIM key at {name}: {add}.")
    key = re.search(r"(?:^|;)\s*p=([^;]*)", keys[0])
    if key is None or not key[1].strip():
        return Finding("dkim", Level.ERROR, f"The DKIM key at {name} is empty (revoked): {add}.")
    return Finding("dkim", Level.OK, f"DKIM key published at {name}.")


def _check_dmarc(resolver: dns.resolver.Resolver, domain: str) -> Finding:
    name = f"_dmarc.{domain}"
    add = f'add TXT {name} "v=DMARC1; p=none; rua=mailto:dmarc@{domain}"'
    dmarc = _tagged(_txt(resolver, name) or [], "v=dmarc1")
    if not dmarc:
        return Finding("dmarc", Level.ERROR, f"No DMARC record for {domain}: {add}.")
    if len(dmarc) > 1:
        return Finding(
            "dmarc",
            Level.ERROR,
            f"{name} has {len(dmarc)} DMARC records (receivers then ignore DMARC): keep one.",
        )
    policy = re.search(r"(?i)(?:^|;)\s*p\s*=\s*(none|quarantine|reject)\s*(;|$)", dmarc[0])
    if policy is None:
        return Finding(
            "dmarc",
            Level.ERROR,
            f"DMARC record of {domain} has no valid policy (p=none, quarantine or reject): "
            f'"{dmarc[0]}"; {add}.',
        )
    return Finding("dmarc", Level.OK, f'DMARC record of {domain}: "{dmarc[0]}".')
