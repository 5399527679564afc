"""`launchkit send` tells cron when a person is needed: exit 1 when the run paused itself,
stopped on a delivery error or left failed rows, one line saying which; ``--json`` carries the
same fields (issue 15, item 9)."""

from __future__ import annotations

import json

from tests.conftest import Cli
from tests.test_cli_sequences import ready  # noqa: F401 (fixture)

NOW = "2026-12-01 14:05"


def _cli(workspace_env, url: str, **toml: int) -> Cli:
    home = workspace_env["LAUNCHKIT_HOME"]
    path = f"{home}/launchkit.toml"
    text = open(path, encoding="utf-8").read()
    for key, value in toml.items():
        text = text.replace(f"{key} = 20", f"{key} = {value}")
    # a public https base_url: no doctor warning on stderr before the one error line
    text = text.replace('"http://127.0.0.1:8000"', '"https://atelier-test.fr"')
    open(path, "w", encoding="utf-8").write(text)
    return Cli({**workspace_env, "LAUNCHKIT_SMTP_URL": url, "LAUNCHKIT_EMAIL_BACKEND": "smtp"})


def test_a_clean_run_exits_0(cli, ready):  # noqa: F811
    cli("sequence", "attach", "spring", "mini")
    r = cli("send", "--now", NOW, "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["sent"], data["problems"], data["paused"], data["stopped"]) == (2, [], [], None)


def test_paused_run_exits_1_and_says_so(cli, ready, workspace_env, smtp_sink):  # noqa: F811
    cli("sequence", "attach", "spring", "mini")
    smtp_sink.fail_next(5, 451, stage="RCPT")
    send = _cli(workspace_env, smtp_sink.url, max_send_errors=1)
    r = send("send", "--now", NOW)
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "retry later 1," in r.stdout
    assert r.stderr == "Error: paused after repeated failures: mini.\n"
    r = send("sequence", "resume", "spring")
    smtp_sink.fail_next(5, 451, stage="RCPT")
    r = send("send", "--now", NOW, "--json")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["paused"] == ["mini"] and data["problems"] == [
        "paused after repeated failures: mini"
    ]


def test_failed_rows_exit_1(cli, ready, workspace_env, smtp_sink):  # noqa: F811
    cli("sequence", "attach", "spring", "mini")
    smtp_sink.fail_next(1, 554, "5.7.1 Content rejected", stage="DATA")
    r = _cli(workspace_env, smtp_sink.url)("send", "--now", NOW)
    assert r.exit_code == 1
    assert "sent 1, retry later 0, failed 1," in r.stdout
    assert r.stderr == "Error: 1 message(s) failed for good.\n"


def test_a_run_stopped_by_a_delivery_error_exits_1(
    cli,
    ready,  # noqa: F811
    workspace_env,
    smtp_sink_factory,
):
    cli("sequence", "attach", "spring", "mini")
    sink = smtp_sink_factory(auth=True)
    url = f"smtp://launchkit:wrong@127.0.0.1:{sink.port}"
    r = _cli(workspace_env, url)("send", "--now", NOW, "--json")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["sent"] == 0 and "refused the login" in data["stopped"]
    assert data["problems"] == [f"stopped on a delivery error: {data['stopped']}"]
    r = _cli(workspace_env, url)("send", "--now", NOW)
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: stopped on a delivery error: ")
    assert "refused the login" in r.stderr and "wrong" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
