"""Per-project dependency cache: what a package install wrote, put back when its inputs repeat.

Pure file-system logic (no NATS, no subprocesses); `dependencies.py` drives it during a build.
Split by concern: `key` (which install this is), `snapshot` (what the install wrote), `transfer`
(copying files into an entry and linking them back out, checked), `store` (a project's entries on
disk), `budget` (the whole cache within its size and age limits).

The key hashes everything that decides what the install writes: the package manager, the lock
file(s), package.json, the install command, the root_dir and the Node.js binary (native add-ons
are compiled for one). An entry holds what the install created or changed, found by comparing the
tree before and after it: `node_modules/` (nested workspace ones too) and whatever the root's
lifecycle scripts wrote (a `postinstall` copying assets into `public/`, yarn's `.pnp.cjs`), plus
what landed in the build's fresh HOME (e.g. a browser that puppeteer downloads). Replaying that is
what makes skipping the install safe. Files the install deleted are not replayed; installs add.

Each project has two caches that never share anything: one for production builds (the project's
own branch) and one for preview builds (any other ref: a branch anyone who can push, or open a pull
request, controls). A preview build's install — its postinstall scripts, a tampered lock file —
can therefore never put a file where a production build restores or downloads from. The trust
level comes with the command (`BuildRequested.environment`; absent counts as preview).

Layout, per project and trust level (`production` or `preview`):
    <cache root>/<project>/<trust>/deps/<key>/manifest.json   the completion marker, written last
    <cache root>/<project>/<trust>/deps/<key>/{root,home}/…    the saved paths, per area
    <cache root>/<project>/<trust>/downloads/{npm,yarn,pnpm,corepack}   download caches

An entry is written into a temporary directory beside the others and renamed into place, so a
`<key>` directory is complete or it is not there; two builds saving the same key both finish, one
rename wins and the other discards its copy. Removal renames first too (to `.trash-…`).

Saving copies (never links) the build's files and lists every directory, link and file in the
manifest, each file with its size, sha256 and permission bits: the build that follows the install
still runs in that tree and may change files in place. Restoring makes directories and links from
that list and hardlinks each file (a copy when the file system refuses, e.g. across devices) only
after reading it and checking its sha256, so an entry whose content changed since the save — a
later build editing a restored file in place through its hardlink, a file planted in the entry —
is refused, removed, and the install runs instead. Files in the entry that the manifest does not
list are never restored. The check reads every file — 7,000 files (114 MB) restore in about
0.45 s instead of 0.2 s without it — which keeps a hit far cheaper than an install.

`budget.py` keeps the whole cache directory within its size and age limits (the worker runs it
periodically): least recently used entries and download caches go first.
"""
