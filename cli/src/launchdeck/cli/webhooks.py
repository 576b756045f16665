"""`launchdeck webhook-secret rotate PROJECT`: a new webhook secret, and where to post pushes.

The secret is printed once (the API never shows it again) with the four hook URLs, so the
operator can paste both into the git host's webhook settings (docs/api.md, "Git webhooks").
"""

from __future__ import annotations

from urllib.parse import quote

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.cli.output import Terminal
from launchdeck.contracts.webhooks import WEBHOOK_PROVIDERS, hook_path

# How each host proves it knows the secret (what to set in its webhook form).
HOW_SIGNED = {
    "github": "GitHub: Secret = the value above, content type application/json",
    "gitlab": "GitLab: Secret token = the value above",
    "gitea": "Gitea / Forgejo: Secret = the value above",
    "generic": "generic: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>",
}


def hook_urls(api_url: str, project: str) -> dict[str, str]:
    """The URL each host posts `project`'s pushes to, by provider."""
    base = api_url.rstrip("/")
    return {p: base + hook_path(p, quote(project, safe="")) for p in WEBHOOK_PROVIDERS}


async def rotate_secret(client: LaunchdeckClient, term: Terminal, *, project: str) -> int:
    rotated = await client.rotate_webhook_secret(project)
    term.success(f"New webhook secret for {project} (shown once; the old one no longer works):")
    term.raw(rotated.webhook_secret + "\n")  # alone on its line, for copying
    term.info("Push webhook URLs:")
    for provider, url in hook_urls(client.api_url, project).items():
        term.info(f"  {provider:<8} {url}")
        term.info(f"           {HOW_SIGNED[provider]}")
    return 0
