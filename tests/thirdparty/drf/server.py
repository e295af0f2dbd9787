"""Run the DRF fixture server: python3 server.py DATA_DIR PORT

Puts py-deps/ (pip --target) on the path, migrates a fresh SQLite database in DATA_DIR,
creates the fixture users and serves on 127.0.0.1:PORT (Django's runserver, no reloader).
The JWT signing key comes from DRF_SIGNING_KEY. Mail goes to DATA_DIR/mail/, one file each.

Fixture users (password: DRF_PASSWORD, default "Correct-Horse-42"), ids in this order:
  1 alice  alice@acme.test    tenant acme
  2 bob    bob@globex.test    tenant globex
  3 carol  carol@acme.test    tenant acme, staff
  4 dave   dave@acme.test     tenant acme
  5 erin   erin@globex.test   tenant globex
  6 gina   gina@globex.test   tenant globex
Users named in DRF_SHORT_LIVED (comma-separated) get access tokens at login that expire after
DRF_SHORT_LIVED_SECONDS (default 1), for tests of real expired tokens.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "py-deps"))
sys.path.insert(0, HERE)


def main():
    data_dir, port = sys.argv[1], int(sys.argv[2])
    os.makedirs(os.path.join(data_dir, "mail"), exist_ok=True)
    os.environ["DRF_DATA_DIR"] = data_dir
    os.environ.setdefault("DRF_SIGNING_KEY", "drf-fixture-signing-key-0123456789")
    os.environ["DJANGO_SETTINGS_MODULE"] = "drfproj.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)

    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    password = os.environ.get("DRF_PASSWORD", "Correct-Horse-42")
    User = get_user_model()
    for name, domain, staff in [
        ("alice", "acme.test", False),
        ("bob", "globex.test", False),
        ("carol", "acme.test", True),
        ("dave", "acme.test", False),
        ("erin", "globex.test", False),
        ("gina", "globex.test", False),
    ]:
        email = f"{name}@{domain}"
        user = User.objects.create_user(name, email, password, is_staff=staff)
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)

    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, skip_checks=True)


if __name__ == "__main__":
    main()
