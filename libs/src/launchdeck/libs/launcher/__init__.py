"""Starting user code (builds, apps): one launcher for both.

`sandbox` puts a command in bubblewrap (what it may see), `reaper` finds and kills what a command
left running (by a marker in its environment, or by the pipes it holds). The build-worker runs
build commands through it, the deploy-engine runs apps through it.
"""
