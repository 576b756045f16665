"""What a build — code written by whoever can push to the repository — gets of NATS: nothing.
Its environment holds no NATS (or other platform) credential, and a forged `DeployRequested`
written straight to the server's socket, as a `postinstall` script could, is refused."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.e2e.support import Api, create_project, deploy
from tests.nats_auth import PASSWORDS
from tests.support import GitRepoFactory

# Run as the build command with the NATS port: prints the build's environment, then speaks the
# NATS protocol without credentials and prints what the server answers.
PROBE = """\
import os, socket, sys
for name, value in sorted(os.environ.items()):
    print(f"ENV {name}={value}")
payload = b'{"v":1,"deployment_id":"forged","project_name":"victim"}'
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as sock:
        sock.recv(4096)  # the server's INFO
        sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false}\\r\\n'
            + b"PUB ld.jobs.deploy %d\\r\\n" % len(payload) + payload + b"\\r\\nPING\\r\\n"
        )
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except OSError:
            pass
    print("NATS answered " + answer.decode(errors="replace").replace("\\r\\n", " | "))
except OSError as exc:
    print(f"NATS unreachable {exc!r}")
os.makedirs("dist", exist_ok=True)
with open("dist/index.html", "w") as page:
    page.write("<h1>probed</h1>")
"""


async def test_a_build_gets_no_credentials_and_nats_refuses_it(
    api: Api, make_git_repo: GitRepoFactory
) -> None:
    port = urlsplit(api.platform.env["NATS_URL"].split(",")[0]).port
    repo = make_git_repo({"probe.py": PROBE})
    await create_project(
        api,
        "prober",
        repo,
        build={"build_command": f"python3 probe.py {port}", "output_dir": "dist"},
    )
    build, _ = await deploy(api, "prober")
    status, log = await api.call("GET", f"/builds/{build['id']}/logs")
    assert status == 200, log

    env = [line.split("ENV ", 1)[1] for line in log.splitlines() if "ENV " in line]
    assert any(line.startswith("PATH=") for line in env), log  # the probe did run
    names = {line.split("=", 1)[0] for line in env}
    assert not {name for name in names if name.startswith("NATS_")}
    assert not names & {"DATABASE_URL", "LAUNCHDECK_SECRET_KEY", "LAUNCHDECK_STATE_DIR"}
    for password in PASSWORDS.values():
        assert password not in log

    answer = next(line for line in log.splitlines() if "NATS " in line)
    assert "PONG" not in answer, answer  # the forged publish got through
    assert "Authorization Violation" in answer or "NATS unreachable" in answer, answer
