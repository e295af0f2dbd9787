"""The Python upstream of tests/differential.rs: Flask 3 on Werkzeug's own HTTP server.

Routing is Flask's (Werkzeug's URL map, with host matching for the admin host): the WSGI
server percent-decodes PATH_INFO, the map matches methods case-insensitively, form and JSON
bodies are read the Flask way. Every handler that runs appends one line
`{"handler": NAME, "rid": X-Request-Id}` to the log file named by argv[1], and answers with
the same JSON. Prints the port it listens on (127.0.0.1, OS-chosen) as its first line.
"""

import json
import logging
import sys
import threading

from flask import Flask, request
from werkzeug.serving import make_server

LOG_PATH = sys.argv[1]
LOG_LOCK = threading.Lock()
logging.getLogger("werkzeug").setLevel(logging.ERROR)

app = Flask(__name__, host_matching=True, static_host="static.invalid")
app.url_map.strict_slashes = True


def ran(handler):
    rid = request.headers.get("X-Request-Id", "")
    line = json.dumps({"handler": handler, "rid": rid})
    with LOG_LOCK:
        with open(LOG_PATH, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return app.response_class(line, status=200, mimetype="application/json")


# Every route but the admin one answers on any host.
ANY = "<_host>"


@app.route("/v1/apps/<app_id>/users/<user_id>/deactivate", methods=["POST"], host=ANY)
def deactivate(_host, app_id, user_id):
    return ran("deactivate")


@app.route("/v1/login", methods=["POST"], host=ANY)
def login(_host):
    return ran("login")


@app.route("/oauth/token", methods=["POST"], host=ANY)
def token(_host):
    grant = request.form.get("grant_type")
    if grant == "password":
        return ran("token_password")
    if grant == "client_credentials":
        return ran("token_client_credentials")
    return ran("token_other")


@app.route("/v1/admin/users", methods=["POST"], host="admin.example.test")
def admin_users():
    body = request.get_json(silent=True)
    if isinstance(body, dict) and body.get("op") == "delete":
        return ran("admin_users_delete")
    return ran("admin_users_other")


@app.route("/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"], host=ANY)
@app.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], host=ANY)
def catch_all(_host, rest):
    return ran("catch_all")


def main():
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
