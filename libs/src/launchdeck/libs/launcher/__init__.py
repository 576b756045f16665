"""Starting user code (builds, apps): one launcher for both.

`launch` starts a command (its own process group, an environment given from nothing, pipes for
its output), `sandbox` puts it in bubblewrap (what it may see), `limits` sets its rlimits (how
much of the machine it may take: address space, open files, processes), `reaper` finds and kills
what a command left running (by a marker in its environment, or by the pipes it holds). The
build-worker runs build commands through it, the deploy-engine runs apps through it.
"""
