#!/usr/bin/env bash
# Vendor MapLibre GL JS into api/static/vendor/maplibre-gl/ (committed; no npm at run time).
#
# The web UI must work with no internet, so the browser never fetches MapLibre from a CDN.
# This script is how the committed files were obtained: `npm pack` downloads the published
# tarball from the npm registry (integrity-checked by npm), and we copy the prebuilt UMD bundle,
# its stylesheet and the licence. Re-run it with another version to upgrade:
#
#     api/static/vendor/maplibre-gl/update.sh            # the pinned version below
#     api/static/vendor/maplibre-gl/update.sh 5.24.1     # an explicit version
set -euo pipefail

VERSION="${1:-5.24.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../.." && pwd)"
DEST="$ROOT/api/static/vendor/maplibre-gl"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
TARBALL="$(npm pack --silent "maplibre-gl@$VERSION")"
tar -xzf "$TARBALL"
PACKED="$(node -p "require('./package/package.json').version")"
[ "$PACKED" = "$VERSION" ] || { echo "npm gave maplibre-gl $PACKED, wanted $VERSION" >&2; exit 1; }

mkdir -p "$DEST"
cp package/dist/maplibre-gl.js package/dist/maplibre-gl.css "$DEST/"
cp package/LICENSE.txt "$DEST/LICENSE.txt"

SHA_JS="$(sha256sum "$DEST/maplibre-gl.js" | cut -d' ' -f1)"
SHA_CSS="$(sha256sum "$DEST/maplibre-gl.css" | cut -d' ' -f1)"
INTEGRITY="$(npm view "maplibre-gl@$VERSION" dist.integrity 2>/dev/null || true)"
cat > "$DEST/README.md" <<README
# MapLibre GL JS $VERSION (vendored)

Copied from the npm package \`maplibre-gl@$VERSION\` by \`api/static/vendor/maplibre-gl/update.sh\`
(\`npm pack\`, then \`dist/maplibre-gl.js\`, \`dist/maplibre-gl.css\` and \`LICENSE.txt\`).
Served by gridgov at \`/static/vendor/maplibre-gl/\`; nothing is fetched from a CDN.

- package tarball integrity: \`${INTEGRITY:-unknown}\`
- sha256 maplibre-gl.js: \`$SHA_JS\`
- sha256 maplibre-gl.css: \`$SHA_CSS\`
- licence: BSD-3-Clause (see LICENSE.txt)

To upgrade: \`api/static/vendor/maplibre-gl/update.sh <version>\`, then run \`pytest tests/e2e\`.
README
echo "vendored maplibre-gl $VERSION into $DEST"
