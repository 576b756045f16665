"""The web dashboard: server-rendered pages over the control-api's own HTTP API.

Its handlers call the API over loopback with the signed-in user's token (`client`), so the API's
authorization decides everything; the pages only hide what the token may not do. See
docs/dashboard.md.
"""
