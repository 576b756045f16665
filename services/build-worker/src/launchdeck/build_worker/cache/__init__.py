"""Per-project dependency cache: what a package install wrote, put back when its inputs repeat.

Pure file-system logic (no NATS, no subprocesses); `dependencies.py` drives it during a build.
Split by concern: `key` (which install this is), `snapshot` (what the install wrote), `transfer`
(copying files into an entry and linking them back out), `store` (a project's entries on disk).

The key hashes everything that decides what the install writes: the package manager, the lock
file(s), package.json, the install command, the root_dir and the Node.js binary (native add-ons
are compiled for one). An entry holds what the install created or changed, found by comparing the
tree before and after it: `node_modules/` (nested workspace ones too) and whatever the root's
lifecycle scripts wrote (a `postinstall` copying assets into `public/`, yarn's `.pnp.cjs`), plus
what landed in the build's fresh HOME (e.g. a browser that puppeteer downloads). Replaying that is
what makes skipping the install safe. Files the install deleted are not replayed; installs add.

Layout, per project:
    <cache root>/<project>/deps/<key>/manifest.json   the completion marker, written last
    <cache root>/<project>/deps/<key>/{root,home}/…    the saved paths, per area
    <cache root>/<project>/downloads/{npm,yarn,pnpm,corepack}   download caches

An entry is written into a temporary directory beside the others and renamed into place, so a
`<key>` directory is complete or it is not there; two builds saving the same key both finish, one
rename wins and the other discards its copy. Removal renames first too (to `.trash-…`).

Saving copies (never links) the build's files: the build that follows the install still runs in
that tree and may change files in place. Restoring hardlinks (a copy when the file system refuses,
e.g. across devices): it is the fast path, and the price is that a later build editing a restored
file in place (rather than replacing it) edits the entry too. Such an edit moves the file's mtime
past the entry's marker, which every restore checks file by file (along with the file count), so a
touched entry is dropped and the next install starts clean instead of replaying the edit.
"""
