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

say "A compute session on the site's local Docker engine: pip install from the mirror inside it"
# The demo's own dockerd: no bridge, no iptables rules, its own socket, exec root and data root,
# so it touches nothing the machine already runs.
engine_run="$(mktemp -d /tmp/reservoir-demo-engine.XXXXXX)"
engine_root="${DEMO_DOCKER_ROOT:-/var/cache/reservoir-demo-docker}"
engine_sock="$engine_run/docker.sock"
engine=""
stop_engine() {
    if [ -n "$engine" ] && kill "$engine" 2>/dev/null; then
        for _ in $(seq 1 100); do kill -0 "$engine" 2>/dev/null || break; sleep 0.2; done
    fi
    engine=""
}
# dockerd leaves its default network namespace mounted under the exec root when it exits.
trap 'kill $server 2>/dev/null || true; stop_engine; umount "$engine_run/exec/netns/default" 2>/dev/null || true; rm -rf "$engine_run" || true' EXIT
if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then
    echo "demo: the session step needs dockerd and root: run \`make demo\` as root (it installs docker.io)" >&2
    exit 1
fi
mkdir -p "$engine_root"
for driver in overlay2 vfs; do
    printf '$ dockerd --bridge=none --iptables=false --storage-driver=%s --data-root %s --host unix://%s &\n' \
        "$driver" "$engine_root" "$engine_sock"
    dockerd --bridge=none --iptables=false --ip6tables=false --storage-driver="$driver" --data-root "$engine_root" \
        --exec-root "$engine_run/exec" --pidfile "$engine_run/docker.pid" --host "unix://$engine_sock" \
        >>"$demo/dockerd.log" 2>&1 &
    engine=$!
    for _ in $(seq 1 200); do
        curl -fsS --unix-socket "$engine_sock" http://engine/_ping >/dev/null 2>&1 && break 2
        kill -0 "$engine" 2>/dev/null || break
        sleep 0.2
    done
    stop_engine
done
if [ -z "$engine" ]; then
    echo "demo: dockerd did not start: $(grep -v '^[[:space:]]*$' "$demo/dockerd.log" | tail -n 1) (log: $demo/dockerd.log)" >&2
    exit 1
fi
printf '$ cat >>%s  # the sessions section\n' "$site/reservoir.toml"
tee -a "$site/reservoir.toml" <<EOF

[sessions]
docker_host = "unix://$engine_sock"
default_mem = "1g"
EOF
# A debootstrap root with python3 and pip (cached in ~/.cache/reservoir/images), imported into the engine.
run reservoir --home "$site" session image build --debootstrap python:site
printf '$ # restart the server so it supervises sessions on that engine\n'
kill "$server"
wait "$server" 2>/dev/null || true
reservoir --home "$site" serve --host 127.0.0.1 --port "$port" >>"$demo/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/pypi/simple/" >/dev/null 2>&1 && break
    sleep 0.1
done
export RESERVOIR_URL="http://127.0.0.1:$port"
RESERVOIR_TOKEN="$(reservoir --home "$site" users token demo)"
export RESERVOIR_TOKEN
printf '$ export RESERVOIR_URL=%s RESERVOIR_TOKEN="$(reservoir --home %s users token demo)"\n' "$RESERVOIR_URL" "$site"
run reservoir session create python:site --name demo1 -r cpu=1 -r mem=1g
run reservoir session exec demo1 -- pip install "$package"
run reservoir session exec demo1 -- python3 -c "import $package; print('$package', $package.__version__, 'imported in a session')"
run reservoir session ls
run reservoir session rm demo1
# The next session has it too (the user's own overlay); a batch one runs, ends and says what it used.
run reservoir session create python:site --type batch --name demo2 -r cpu=1 -r mem=1g -- \
    python3 -c "import $package, time; print('$package', $package.__version__, 'still there in the next session'); time.sleep(3)"
for _ in $(seq 1 300); do
    reservoir session info demo2 | head -n 1 | grep -q ': ended$' && break
    sleep 0.2
done
run reservoir session logs demo2
run reservoir session info demo2

say "Done. Hub and site homes are in $demo"
