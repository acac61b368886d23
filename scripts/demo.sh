#!/usr/bin/env bash
# The main job end to end on embedded defaults (SQLite, local folders):
# hub sync -> export -> carry to the site's inbox -> import -> serve -> pip install.
# Prints each command as a user would type it.
set -euo pipefail

demo="${DEMO_DIR:-$PWD/demo-home}"
package="${DEMO_PACKAGE:-requests}"
hub="$demo/hub"
site="$demo/site"
media="$demo/usb-stick"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rm -rf "$demo"
mkdir -p "$demo" "$media"

say "On the connected hub: create it, curate a channel, sync the closure"
run reservoir --home "$hub" init --role hub
run reservoir --home "$hub" channel add pypi --kind pypi --package "$package"
run reservoir --home "$hub" channel ls
run reservoir --home "$hub" sync


say "Export what the site lacks into a signed bundle on removable media"
run reservoir --home "$hub" key export --out "$media/hub.pub"
bundle="$(reservoir --home "$hub" export --out "$media" | tail -n 1)"
printf '$ reservoir --home %s export --out %s\n%s\n' "$hub" "$media" "$bundle"
run ls -l "$bundle"

say "At the air-gapped site: trust the hub, drop the bundle into the inbox, import"
run reservoir --home "$site" init --role site
run reservoir --home "$site" trust add "$media/hub.pub"
run cp -r "$bundle" "$site/inbox/"
run reservoir --home "$site" watch "$site/inbox" --once
run ls "$site/inbox/done"

say "Serve the site's index and install from it in a fresh environment"
port="$(free_port)"
printf '$ reservoir --home %s serve --host 127.0.0.1 --port %s &\n' "$site" "$port"
reservoir --home "$site" serve --host 127.0.0.1 --port "$port" >"$demo/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/pypi/simple/" >/dev/null 2>&1 && break
    sleep 0.1
done
run python3 -m venv "$demo/venv"
# --isolated: no user pip configuration, so the site is the only index.
run "$demo/venv/bin/pip" --isolated install --no-cache-dir --index-url "http://127.0.0.1:$port/pypi/simple/" "$package"
run "$demo/venv/bin/python" -c "import $package, sys; print('$package', $package.__version__, 'installed from the site mirror')"

say "Done. Hub and site homes are in $demo"
