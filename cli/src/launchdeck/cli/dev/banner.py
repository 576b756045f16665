"""What `launchdeck dev` prints once the platform is up: where everything is, and what to type.

Everything an operator needs to reach each part by hand (the dashboard, the API and its token,
the edge, NATS for the `nats` CLI, the deploy-engine's health port), and commands that work
verbatim from the checkout: `./launchdeck` runs the CLI through uv whether or not uv is on PATH.
"""

from __future__ import annotations

from pathlib import Path

from launchdeck.cli.devstate import DevInfo, dev_json_path
from launchdeck.cli.output import BOLD, DIM, PrefixedTerminal

CLI = "./launchdeck"
BANNER_TITLE = "Launchdeck is running"


def banner(term: PrefixedTerminal, info: DevInfo, example_live: bool | None) -> list[str]:
    """The banner's lines. `example_live`: None when the example was not deployed (yet)."""
    rule = term.style("─" * 72, DIM)
    rows = [
        # First: where a newcomer goes (sign in with the admin token below).
        ("Dashboard", info.dashboard_url or info.api_url + "/"),
        ("API", info.api_url),
        ("Admin token", info.admin_token),
        ("Edge", info.edge_url),
    ]
    if example_live is not None and info.example_url:
        rows.append(("Example", info.example_url + ("" if example_live else "  (not live)")))
    rows.append(("NATS", info.nats_url))
    if info.nats_user:
        # The password stays in dev.json (0600): the banner may end up in a CI log.
        rows.append(("NATS login", f"user {info.nats_user}, password: nats_password in dev.json"))
    deploy_engine_port = info.ports.get("deploy_engine")
    if deploy_engine_port is not None:
        rows.append(("Deploy-engine", f"http://127.0.0.1:{deploy_engine_port}/health"))
    rows.append(("dev.json", str(dev_json_path(Path(info.state_dir)))))
    lines = ["", rule, "  " + term.style(BANNER_TITLE, BOLD), ""]
    lines += [f"  {label:<14} {value}" for label, value in rows]
    first_try = (
        f"{CLI} deploy example" if info.example_url else f"{CLI} projects create NAME REPO_URL"
    )
    lines += [
        "",
        f"  Try:  {first_try}",
        f"        {CLI} projects list",
        f"        {CLI} --help",
        "  Press Ctrl-C to stop.",
        rule,
        "",
    ]
    return lines
