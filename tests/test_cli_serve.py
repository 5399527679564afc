"""`launchkit serve` checks its configuration and port before announcing itself (#17)."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import free_port


@pytest.fixture
def busy_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        yield held.getsockname()[1]


def test_busy_port_is_one_line_and_nothing_is_announced(cli, busy_port):
    r = cli("serve", "--port", str(busy_port))
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == (
        f"Error: port {busy_port} on 127.0.0.1 is already in use; pick another with --port"
    )
    assert "Serving" not in r.stdout
    assert "Traceback" not in r.stderr and "Errno" not in r.stderr


def test_unknown_host_is_one_line(cli):
    r = cli("serve", "--host", "no-such-host.invalid", "--port", str(free_port()))
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1].startswith(
        'Error: --host "no-such-host.invalid" is not an address of this machine'
    )


def _offer(cli) -> None:
    r = cli("launch", "create", "spring", "--product", "P", "--cart-open", "2027-03-08 10:00",
            "--cart-close", "2027-03-15 23:59")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert cli("offer", "add", "spring", "cours", "--product", "P", "--price", "97").exit_code == 0


def test_offers_without_stripe_key_warn_before_serving(cli, busy_port):
    _offer(cli)
    r = cli("serve", "--port", str(busy_port))  # the busy port stops it after the checks
    lines = r.stderr.splitlines()
    assert any(
        line.startswith("Warning: 1 offer(s) but STRIPE_API_KEY is not set") for line in lines
    )
    assert lines[-1].startswith(f"Error: port {busy_port} on 127.0.0.1 is already in use")


def test_strict_refuses_offers_without_stripe_key(cli):
    _offer(cli)
    r = cli("serve", "--strict", "--port", str(free_port()))
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: 1 offer(s) but STRIPE_API_KEY is not set: buyers would")
    assert r.stderr.rstrip().endswith("Nothing was done: serve refused (see `launchkit doctor`).")
    assert "Serving" not in r.stdout
