"""django-oauth-toolkit for tests/thirdparty_dot.rs, without manage.py.

    python3 server.py DATA_DIR PORT

Migrates an SQLite database in DATA_DIR, creates the fixtures (users; one OAuth Application
per tenant app, with its client id and secret) and serves Django's own WSGI server (the one
runserver uses, threaded) on 127.0.0.1:PORT until killed. Password-reset mails are written to
DATA_DIR/mail/. Packages come from ./py-deps (requirements.txt)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "py-deps"))
sys.path.insert(0, HERE)

# The fixtures. tests/thirdparty_dot.rs uses the same values.
USERS = [
    # username, password, email, staff
    ("alice", "alice-pw-Qm7x2Lk9", "alice@example.test", False),
    ("bob", "bob-pw-Vn4s8Rt1", "bob@example.test", False),
    ("carol", "carol-pw-Hd3j6Wp0", "carol@example.test", False),
    ("root", "root-pw-Zc5f1Yg8", "root@example.test", True),
]
APPLICATIONS = [
    # name (the tenant app), client id, client secret, grant type, redirect uris
    ("app-alpha", "alpha-cli", "alpha-secret-Jr8t3Nq6Bx2w", "password", ""),
    ("app-beta", "beta-web", "beta-secret-Ke5m9Pv1Dz7c", "authorization-code", "http://client.beta.test/cb"),
    # Access tokens of this client live one second (settings.SHORT_LIVED_CLIENTS).
    ("app-gamma", "gamma-short", "gamma-secret-Wb6y4Hs0Fa3u", "password", ""),
]


def fixtures():
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    User = get_user_model()
    for username, password, email, staff in USERS:
        User.objects.create_user(username, email, password, is_staff=staff)
    Application = get_application_model()
    for name, client_id, secret, grant, redirect_uris in APPLICATIONS:
        Application.objects.create(
            name=name,
            client_id=client_id,
            client_secret=secret,  # hashed on save
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=grant,
            redirect_uris=redirect_uris,
        )


def main():
    data_dir, port = sys.argv[1], int(sys.argv[2])
    os.makedirs(os.path.join(data_dir, "mail"), exist_ok=True)
    os.environ["DOT_DATA_DIR"] = data_dir
    os.environ["DJANGO_SETTINGS_MODULE"] = "dotsite.settings"

    import django

    django.setup()
    from django.core.management import call_command
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application

    call_command("migrate", verbosity=0, interactive=False)
    fixtures()
    print(f"dot: serving on 127.0.0.1:{port}", flush=True)
    run("127.0.0.1", port, get_wsgi_application(), ipv6=False, threading=True)


if __name__ == "__main__":
    main()
