"""An nginx configuration that serves a site's published trees like `reservoir serve`.

Any number of stateless nginx replicas over shared storage can serve the
same bytes: nginx follows the ``current`` symlink on every request, so an
atomic publish is seen at once. PEP 691 negotiation is a ``map`` over the
Accept header (JSON when the client lists the JSON type with a non-zero q,
which is what pip and uv send), ``?format=`` overrides it, and the
pre-compressed pages go out with ``gzip_static``.

Names: pip and uv request normalized project names themselves; unlike
`reservoir serve`, nginx does not redirect other spellings.

APT trees (``/apt/<channel>/``) are plain static files under ``trees/apt``:
nginx answers If-Modified-Since and Range itself, follows the links into the
live generation, and never serves the tree's own folders or dot names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NginxSite:
    trees_dir: Path
    listen: str  # "127.0.0.1:8080"
    htpasswd: Path | None  # basic auth on the index when set
    admin_upstream: str | None = None  # where `reservoir serve` runs, for /admin/


def render_nginx_config(
    site: NginxSite,
    *,
    standalone: bool = False,
    pid: Path | None = None,
    prefix: Path | None = None,
    user: str | None = None,
) -> str:
    """The `server` block (and, with `standalone`, a whole nginx.conf around it)."""
    pypi = site.trees_dir / "pypi" / "current"
    auth = (
        f'        auth_basic "reservoir";\n        auth_basic_user_file {site.htpasswd};\n' if site.htpasswd else ""
    )
    admin = ""
    if site.admin_upstream:
        admin = f"""
    location /admin/ {{
        proxy_pass http://{site.admin_upstream};
        proxy_set_header Host $host;
        proxy_set_header Authorization $http_authorization;
    }}
"""
    server = f"""
map $http_accept $reservoir_accept_format {{
    default html;
    "~*application/vnd\\.pypi\\.simple\\.(v1|latest)\\+json(?!\\s*;\\s*q=0(\\.0*)?\\s*(,|$))" json;
}}
map $arg_format $reservoir_format {{
    default $reservoir_accept_format;
    # $arg_ is not URL-decoded: `+` may arrive as itself, as %2B or as a space.
    "~*^application/vnd\\.pypi\\.simple\\.(v1|latest)(\\+|%2B|%20| )json$" json;
    "~*^application/vnd\\.pypi\\.simple\\.(v1|latest)(\\+|%2B|%20| )html$" html;
    "~*^text(/|%2F)html$" html;
}}

server {{
    listen {site.listen};
    server_name _;
    sendfile on;
    tcp_nopush on;
    gzip_static on;

    location = /pypi/simple {{
        return 301 /pypi/simple/;
    }}
    location ~ ^/pypi/simple/(?<reservoir_project>[^/]+)$ {{
        return 301 /pypi/simple/$reservoir_project/;
    }}
    location ^~ /pypi/simple/ {{
{auth}        alias {pypi}/simple/;
        index index.$reservoir_format;
        types {{
            application/vnd.pypi.simple.v1+json json;
            text/html html;
        }}
        charset utf-8;
        add_header Vary "Accept, Accept-Encoding" always;
        add_header Cache-Control "max-age=60" always;
    }}
    location ^~ /pypi/files/ {{
{auth}        alias {pypi}/files/;
        types {{ }}
        default_type application/octet-stream;
        add_header Cache-Control "max-age=31536000, immutable" always;
    }}
    location ^~ /apt/ {{
{auth}        root {site.trees_dir};
        types {{ }}
        default_type application/octet-stream;
        add_header Cache-Control "max-age=0, must-revalidate" always;
        # The tree's own folders and dot names (objects, generations) are no part of a repository.
        location ~ ^/apt/(current|gen-[^/]*)(/|$) {{
            return 404;
        }}
        location ~ /\\. {{
            return 404;
        }}
        # A pool file or a by-hash index never changes under its name.
        location ~ ^/apt/[^/]+/(pool/|dists/.*/by-hash/) {{
            add_header Cache-Control "max-age=31536000, immutable" always;
        }}
    }}
    location = /healthz {{
        default_type application/json;
        return 200 '{{"status": "ok"}}';
    }}
{admin}}}
"""
    if not standalone:
        return server.lstrip("\n")
    user_line = f"user {user};\n" if user else ""
    return f"""{user_line}worker_processes auto;
pid {pid or (prefix or Path('/tmp')) / 'nginx.pid'};
error_log {(prefix or Path('/tmp')) / 'error.log'} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {(prefix or Path('/tmp')) / 'client_body'};
    proxy_temp_path {(prefix or Path('/tmp')) / 'proxy'};
    fastcgi_temp_path {(prefix or Path('/tmp')) / 'fastcgi'};
    uwsgi_temp_path {(prefix or Path('/tmp')) / 'uwsgi'};
    scgi_temp_path {(prefix or Path('/tmp')) / 'scgi'};
    keepalive_requests 100000;
{server}}}
"""
